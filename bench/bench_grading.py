"""Grading benchmark on the real datasets: agreement, wrong-answer rejection, MATH speed.

    python bench/bench_grading.py [--data DIR] [--limit N] [--sections scaling,files,agreement]

Data come from --data, else $MALT_SHARED_DATA, else <repo>/../shared/data. Sections, each
written to its own JSON file in bench/results/:
* files (`grading.json`), for each dataset file:
  - self-agreement: a text ending in the gold answer in the G prompt's marked format earns
    reward 1 (and `is_equivalent(gold, gold)` holds); for MATH also straight through
    math-verify without the exact-match shortcut, and for MATH-500 the solution's box
    against the dataset's separate `answer` field;
  - wrong-answer rejection: another problem's gold answer (the next one that differs as a
    string) earns reward 0;
  - MATH speed: math-verify comparisons per second (grader pool, no cache, no shortcut), and
    full `reward` calls per second on the reference solutions' text.
* agreement (`grading_agreement.json`), MATH test: each gold answer written the ways models
  write it (boxed, unboxed "Final Answer:", restated, one box per listed value, a list in
  another order, another problem's answer) and whether each is graded as it should be: a
  reordered list is right for a set question and wrong for a tuple or interval.
  `--dump-cases FILE` writes these cases as JSONL, to grade them with another version.
* scaling (`grading_scaling.json`): answers per second of the grader pool at 1 and 2
  processes on MATH test gold answers against realistic predictions (a right answer written
  differently, a near miss, another problem's answer), rounds alternating 1, 2, 1, 2, 1, 2.
  The speedup is best against best; the ratio within each adjacent (1, 2) pair is recorded
  too, as is the load average before and after: it needs quiet cores (a shared VM's
  neighbours move single runs by 15%).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from malt.records import Problem  # noqa: E402
from malt.tasks import get_task  # noqa: E402
from malt.tasks.math import answer_order, grade_many, normalize, split_top  # noqa: E402
from malt.tasks.mathverify import GraderPool, MathVerifier, default_workers  # noqa: E402

DATASETS = {
    "gsm8k": ("gsm8k", ["gsm8k/train.jsonl", "gsm8k/test.jsonl"]),
    "csqa": ("csqa", [
        "commonsenseqa/train_rand_split.jsonl", "commonsenseqa/dev_rand_split.jsonl"
    ]),
    "math": ("math", [
        "math/train.jsonl", "math/test.jsonl", "math/prm800k_math_splits/test.jsonl"
    ]),
}
MATH_TEST = "math/test.jsonl"
MARKED: dict[str, Callable[[str], str]] = {
    "gsm8k": lambda a: f"Let me add it up step by step.\nFinal Answer: {a}",
    "csqa": lambda a: f"Only one choice fits.\nFinal Answer: ({a})",
    "math": lambda a: f"Putting it together, the answer is $\\boxed{{{a}}}$.",
}


def other_gold(problems: list[Problem], i: int, key: Callable[[str], object]) -> str:
    """The gold answer of the next problem whose answer differs from problem i's under `key`."""
    for k in range(1, len(problems)):
        cand = problems[(i + k) % len(problems)].answer
        if cand and key(cand) != key(problems[i].answer):
            return cand
    raise ValueError("all answers are the same")


def rate(hits: int, n: int) -> dict:
    return {"n": n, "hits": hits, "rate": round(hits / n, 6) if n else None}


# ---- files: self-agreement and rejection per data file ------------------------------------


def bench_file(task_name: str, path: Path, limit: int | None) -> dict:
    """Self-agreement and rejection rates (and math-verify timings) for one data file."""
    task = get_task(task_name)
    problems = task.load(str(path), limit=limit)
    fmt = MARKED[task_name]
    key = normalize if task_name == "math" else (lambda a: a)
    out: dict = {"rows": len(problems)}
    out["self_reward"] = rate(sum(task.reward(fmt(p.answer), p) for p in problems), len(problems))
    wrong = [other_gold(problems, i, key) for i in range(len(problems))]
    out["wrong_rejected"] = rate(
        sum(1 - task.reward(fmt(w), p) for w, p in zip(wrong, problems, strict=True)), len(problems)
    )
    if task_name == "math":
        t0 = time.perf_counter()
        hits = sum(task.reward(p.meta["solution"], p) for p in problems)
        out["reference_solution_reward"] = rate(hits, len(problems))
        out["reference_solution_reward"]["per_s"] = round(
            len(problems) / (time.perf_counter() - t0), 1
        )
        out["ungradable_empty_box"] = [p.id for p in problems if not p.answer]
        # A fresh pool per file: no parse cache carried over (MATH-500 is inside test).
        pool = GraderPool()
        pool.start()  # before the clock runs
        try:
            out.update(math_verify_rates(problems, wrong, pool))
        finally:
            pool.close()
    return out


def math_verify_rates(problems: list[Problem], wrong: list[str], pool: GraderPool) -> dict:
    """Straight math-verify self-agreement, rejection, MATH-500 box-vs-answer and speed."""
    out: dict = {"math_verify_workers": pool.workers}
    t0 = time.perf_counter()
    hits = sum(pool.equivalent_many([(p.answer, p.answer) for p in problems]))
    t_self = time.perf_counter() - t0
    out["math_verify_self"] = rate(hits, len(problems))
    t0 = time.perf_counter()
    verdicts = pool.equivalent_many([(w, p.answer) for w, p in zip(wrong, problems, strict=True)])
    t_wrong = time.perf_counter() - t0
    accepted = [
        {"id": p.id, "wrong": w, "gold": p.answer}
        for w, p, ok in zip(wrong, problems, verdicts, strict=True) if ok
    ]
    out["math_verify_wrong_rejected"] = rate(len(problems) - len(accepted), len(problems))
    out["math_verify_wrong_accepted"] = accepted[:50]  # to read: often the same value
    out["math_verify_answers_per_s"] = round(2 * len(problems) / (t_self + t_wrong), 1)
    # Model outputs are new strings: a trailing space defeats the helper's parse cache for the
    # prediction (the gold stays cached, as it does across one problem's samples).
    t0 = time.perf_counter()
    hits = sum(pool.equivalent_many([(p.answer + " ", p.answer) for p in problems]))
    out["math_verify_uncached_pred_self"] = rate(hits, len(problems))
    out["math_verify_uncached_pred_answers_per_s"] = round(
        len(problems) / (time.perf_counter() - t0), 1
    )
    refs = [p for p in problems if "reference_answer" in p.meta]
    if refs:
        task = get_task("math")
        agree = [p.id for p in refs if not task.is_equivalent(p.meta["reference_answer"], p.answer)]
        out["box_vs_answer_field"] = rate(len(refs) - len(agree), len(refs))
        out["box_vs_answer_field"]["disagree"] = agree
    return out


def hard_bound(verifier: MathVerifier) -> dict:
    """Wall time of a pathological comparison called from a non-main thread."""
    result: dict = {}
    verifier.equivalent("1", "2")  # start the helper first: the bound is per call, not startup

    def work() -> None:
        t0 = time.perf_counter()
        result["equivalent"] = verifier.equivalent("(10^{100})!", "1")
        result["seconds"] = round(time.perf_counter() - t0, 3)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return {"timeout_s": verifier.timeout_s, **result}


# ---- agreement: gold answers written as models write them ---------------------------------


def _listed(p: Problem) -> tuple[list[str], str] | None:
    """The values an answer lists and how: "set", "tuple" or "interval" (None: one value).

    A list of tuples, a union of intervals, words or a number with thousands separators are
    left out: they have no single reordering to test.
    """
    a = re.sub(r"^\s*[A-Za-z]\s*\\in\s*", "", p.answer.strip())  # "x \in (a, b)": an interval
    parts = split_top(a)
    if len(parts) > 1:
        if any(x.startswith(("(", "[", "\\left", "\\{")) for x in parts):
            return None
        body, kind = a, "tuple" if answer_order(p.question) is True else "set"
    else:
        m = re.fullmatch(r"(?:\\left)?\((.*?)(?:\\right)?\)|\\\{(.*)\\\}", a, re.S)
        if not m or "\\cup" in a:
            return None
        body = next(g for g in m.groups() if g is not None)
        kind = "set" if a.startswith("\\{") else "tuple"
        interval = a != p.answer.strip() or "\\infty" in a or answer_order(p.question) is False
        if kind == "tuple" and (interval or re.search(r"(?i)\binterval\b", p.question)):
            kind = "interval"
    values = split_top(body)
    if len(values) < 2 or "\\text" in body or re.fullmatch(r"[\\$\d,.! ]+", body):
        return None
    if len({normalize(v) for v in values}) < len(values):
        return None
    return values, kind


def agreement_cases(problems: list[Problem], seed: int = 0) -> list[dict]:
    """(variant, problem id, model text, whether it should grade correct) for every problem."""
    rng = random.Random(seed)
    cases = []

    def add(variant: str, p: Problem, text: str, right: bool) -> None:
        cases.append({"variant": variant, "id": p.id, "text": text, "right": right})

    for i, p in enumerate(problems):
        if not p.answer:
            continue
        a, other = p.answer, other_gold(problems, i, normalize)
        add("boxed", p, f"Putting it together, the answer is $\\boxed{{{a}}}$.", True)
        add("final_answer_line", p, f"Final Answer: The final answer is ${a}$. I hope it is correct.", True)
        add("final_answer_markdown", p, f"Adding up the cases.\n\n**Final Answer:** ${a}$", True)
        add("the_answer_is", p, f"Checking both cases, the answer is ${a}$.", True)
        add("restated_box", p,
            f"So $x = \\boxed{{{a}}}$.\n\nTherefore, the final answer is $\\boxed{{{a}}}$.", True)
        add("wrong_boxed", p, f"Putting it together, the answer is $\\boxed{{{other}}}$.", False)
        add("wrong_final_answer_line", p, f"Final Answer: The final answer is ${other}$.", False)
        listed = _listed(p)
        if listed is None:
            continue
        values, kind = listed
        boxes = ", ".join(f"$\\boxed{{{v}}}$" for v in values[:-1]) + f" and $\\boxed{{{values[-1]}}}$"
        # An interval's endpoints boxed one by one are two numbers, not the interval.
        add(f"one_box_per_value_{kind}", p, f"The values are {boxes}.", kind != "interval")
        add("one_box_per_value_missing_one", p,
            "The values are " + ", ".join(f"$\\boxed{{{v}}}$" for v in values[:-1]) + ".", False)
        shuffled = values[::-1]
        if len(values) > 2 and rng.random() < 0.5:
            shuffled = values[1:] + values[:1]
        written = ", ".join(shuffled)
        if kind != "set":
            written = f"({written})"
        add(f"other_order_{kind}", p, f"So the answer is $\\boxed{{{written}}}$.", kind == "set")
    return cases


def bench_agreement(problems: list[Problem]) -> dict:
    """How many agreement cases of each variant are graded as they should be."""
    task = get_task("math")
    by_id = {p.id: p for p in problems}
    cases = agreement_cases(problems)
    preds = [task.extract_answer(c["text"]) for c in cases]
    t0 = time.perf_counter()
    verdicts = grade_many([(pred or "", by_id[c["id"]].answer) for c, pred in zip(cases, preds, strict=True)])
    seconds = time.perf_counter() - t0
    out: dict = {"rows": len(problems), "cases": len(cases), "grade_many_seconds": round(seconds, 2)}
    for c, pred, ok in zip(cases, preds, verdicts, strict=True):
        got = bool(pred) and ok
        row = out.setdefault(c["variant"], {"n": 0, "hits": 0, "misses": []})
        row["n"] += 1
        row["hits"] += got == c["right"]
        if got != c["right"] and len(row["misses"]) < 10:
            row["misses"].append({"id": c["id"], "gold": by_id[c["id"]].answer, "pred": pred})
    for row in out.values():
        if isinstance(row, dict):
            row["rate"] = round(row["hits"] / row["n"], 6)
    return out


# ---- scaling: answers per second at 1 and 2 grader processes ------------------------------


def _restyle(answer: str, rng: random.Random) -> str:
    """The same answer as a model might write it: other spacing, \\dfrac, "x =", a decimal point."""
    if re.fullmatch(r"-?\d+", answer):
        return rng.choice([f"{answer}.0", f"x = {answer}", f"{answer}"])
    styled = answer.replace("\\frac", "\\dfrac").replace(",", ", ").replace("  ", " ")
    return styled if styled != answer else f"x = {answer}"


def _near_miss(answer: str, other: str, rng: random.Random) -> str:
    """A wrong answer close to `answer`: off by one, a flipped fraction, a list reordered."""
    if re.fullmatch(r"-?\d+", answer):
        return str(int(answer) + rng.choice([-1, 1]))
    flipped = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"\\frac{\2}{\1}", answer, count=1)
    if flipped != answer:
        return flipped
    parts = split_top(answer)
    return ", ".join(parts[::-1]) if len(parts) > 1 else other


def scaling_pairs(problems: list[Problem], seed: int = 0) -> list[tuple[str, str]]:
    """(prediction, gold) as a model's samples give them: right restyled, near miss, other's."""
    rng = random.Random(seed)
    task = get_task("math")
    gradable = [p for p in problems if p.answer]
    pairs = []
    for i, p in enumerate(gradable):
        other = gradable[rng.randrange(len(gradable))].answer if i else gradable[-1].answer
        for pred in (_restyle(p.answer, rng), _near_miss(p.answer, other, rng), other):
            text = f"Let me work through this step by step.\n...\nSo the answer is $\\boxed{{{pred}}}$."
            pairs.append((task.extract_answer(text) or "", p.answer))
    return pairs


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its reaped children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def bench_scaling(problems: list[Problem], rounds: list[int]) -> dict:
    """Answers per second of a fresh pool of each size (children started before the clock)."""
    pairs = scaling_pairs(problems)
    runs, verdicts = [], {}
    load_before = os.getloadavg()
    for workers in rounds:
        pool = GraderPool(workers=workers)
        pool.start()
        try:
            cpu0 = _cpu_seconds()
            t0 = time.perf_counter()
            verdicts[workers] = pool.equivalent_many(pairs)
            seconds = time.perf_counter() - t0
            parent_cpu = _cpu_seconds()[0] - cpu0[0]
            restarts = pool.restarts
        finally:
            pool.close()  # reaps the children, so their CPU time is counted below
        children_cpu = _cpu_seconds()[1] - cpu0[1]  # includes their warm-up after start
        runs.append({"workers": workers, "answers": len(pairs), "seconds": round(seconds, 2),
                     "answers_per_s": round(len(pairs) / seconds, 1), "restarts": restarts,
                     "parent_cpu_s": round(parent_cpu, 2), "children_cpu_s": round(children_cpu, 2)})
        print("scaling", json.dumps(runs[-1]), flush=True)
    best = {w: max(r["answers_per_s"] for r in runs if r["workers"] == w) for w in set(rounds)}
    out = {
        "problems": len(problems), "answers": len(pairs), "runs": runs,
        "best_answers_per_s": {str(w): v for w, v in sorted(best.items())},
        "accepted": {str(w): sum(v) for w, v in sorted(verdicts.items())},
        "same_verdicts_at_every_size": len({tuple(v) for v in verdicts.values()}) == 1,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    if 1 in best and 2 in best:
        out["speedup_2_vs_1"] = round(best[2] / best[1], 3)
        pairs_12 = [(a, b) for a, b in zip(runs, runs[1:], strict=False)
                    if (a["workers"], b["workers"]) == (1, 2)]
        out["speedup_2_vs_1_per_pair"] = [
            round(b["answers_per_s"] / a["answers_per_s"], 3) for a, b in pairs_12]
    return out


# ---- main ---------------------------------------------------------------------------------


def machine(args: argparse.Namespace) -> dict:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "python": platform.python_version(), "cpu_count": os.cpu_count(), "usable_cores": affinity,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "limit": args.limit,
        "default_grader_workers": default_workers(),
    }


def write(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("wrote", path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = os.environ.get("MALT_SHARED_DATA") or str(ROOT / ".." / "shared" / "data")
    ap.add_argument("--data", default=default_data)
    ap.add_argument("--limit", type=int, default=None, help="first N rows per file")
    ap.add_argument("--sections", default="files,agreement,scaling", help="run in this order")
    ap.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--scaling-problems", type=int, default=1500, help="MATH test rows timed")
    ap.add_argument("--scaling-rounds", default="1,2,1,2,1,2", help="pool sizes, in the order run")
    ap.add_argument("--dump-cases", default=None, help="write the agreement cases as JSONL")
    args = ap.parse_args()
    data, out_dir = Path(args.data), Path(args.out_dir)
    if args.dump_cases:
        problems = get_task("math").load(str(data / MATH_TEST), limit=args.limit)
        with open(args.dump_cases, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(c) + "\n" for c in agreement_cases(problems))
        print("wrote", args.dump_cases)
    for section in args.sections.split(","):  # in the order given
        if section == "files":
            write(out_dir / "grading.json", run_files(data, args))
        elif section == "agreement":
            problems = get_task("math").load(str(data / MATH_TEST), limit=args.limit)
            results = {"file": MATH_TEST, **bench_agreement(problems), "machine": machine(args)}
            print("agreement", json.dumps({k: v.get("rate") for k, v in results.items()
                                           if isinstance(v, dict) and "rate" in v}))
            write(out_dir / "grading_agreement.json", results)
        elif section == "scaling":
            problems = get_task("math").load(str(data / MATH_TEST), limit=args.scaling_problems)
            rounds = [int(w) for w in args.scaling_rounds.split(",")]
            results = {"file": MATH_TEST, **bench_scaling(problems, rounds), "machine": machine(args)}
            write(out_dir / "grading_scaling.json", results)


def run_files(data: Path, args: argparse.Namespace) -> dict:
    """The files section: every dataset file, then the hard bound from a thread."""
    results: dict = {"files": {}}
    t0 = time.perf_counter()
    for name, (task_name, files) in DATASETS.items():
        for rel in files:
            t1 = time.perf_counter()
            res = bench_file(task_name, data / rel, args.limit)
            res["seconds"] = round(time.perf_counter() - t1, 2)
            results["files"][f"{name}:{rel}"] = res
            print(rel, json.dumps({k: v for k, v in res.items() if k != "box_vs_answer_field"}))
    results["hard_bound_from_thread"] = hard_bound(MathVerifier(timeout_s=2.0))
    results["total_seconds"] = round(time.perf_counter() - t0, 1)
    results["machine"] = machine(args)
    return results

if __name__ == "__main__":
    main()
