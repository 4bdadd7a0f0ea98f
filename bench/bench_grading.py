"""Grading benchmark on the real datasets: self-agreement, wrong-answer rejection, MATH speed.

    python bench/bench_grading.py [--data DIR] [--limit N] [--out bench/results/grading.json]

Data come from --data, else $MALT_SHARED_DATA, else <repo>/../shared/data. For each dataset:
* self-agreement: a text ending in the gold answer in the G prompt's marked format earns
  reward 1 (and `is_equivalent(gold, gold)` holds); for MATH also straight through
  math-verify without the exact-match shortcut, and for MATH-500 the solution's box against
  the dataset's separate `answer` field;
* wrong-answer rejection: another problem's gold answer (the next one that differs as a
  string) earns reward 0;
* MATH speed: math-verify comparisons per second (helper process, no cache, no shortcut),
  and full `reward` calls per second on the reference solutions' text.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from malt.records import Problem  # noqa: E402
from malt.tasks import get_task  # noqa: E402
from malt.tasks.math import normalize  # noqa: E402
from malt.tasks.mathverify import MathVerifier  # noqa: E402

DATASETS = {
    "gsm8k": ("gsm8k", ["gsm8k/train.jsonl", "gsm8k/test.jsonl"]),
    "csqa": ("csqa", [
        "commonsenseqa/train_rand_split.jsonl", "commonsenseqa/dev_rand_split.jsonl"
    ]),
    "math": ("math", [
        "math/train.jsonl", "math/test.jsonl", "math/prm800k_math_splits/test.jsonl"
    ]),
}
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
        # A fresh helper per file: no parse cache carried over (MATH-500 is inside test).
        verifier = MathVerifier()
        verifier.equivalent("1", "1")  # start it before the clock runs
        try:
            out.update(math_verify_rates(problems, wrong, verifier))
        finally:
            verifier.close()
    return out


def math_verify_rates(problems: list[Problem], wrong: list[str], verifier: MathVerifier) -> dict:
    """Straight math-verify self-agreement, rejection, MATH-500 box-vs-answer and speed."""
    out: dict = {}
    t0 = time.perf_counter()
    hits = sum(verifier.equivalent(p.answer, p.answer) for p in problems)
    t_self = time.perf_counter() - t0
    out["math_verify_self"] = rate(hits, len(problems))
    t0 = time.perf_counter()
    accepted = [
        {"id": p.id, "wrong": w, "gold": p.answer}
        for w, p in zip(wrong, problems, strict=True)
        if verifier.equivalent(w, p.answer)
    ]
    t_wrong = time.perf_counter() - t0
    out["math_verify_wrong_rejected"] = rate(len(problems) - len(accepted), len(problems))
    out["math_verify_wrong_accepted"] = accepted[:50]  # to read: often the same value
    n = 2 * len(problems)
    out["math_verify_answers_per_s"] = round(n / (t_self + t_wrong), 1)
    # Model outputs are new strings: a trailing space defeats the helper's parse cache for the
    # prediction (the gold stays cached, as it does across one problem's samples).
    t0 = time.perf_counter()
    hits = sum(verifier.equivalent(p.answer + " ", p.answer) for p in problems)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = os.environ.get("MALT_SHARED_DATA") or str(ROOT / ".." / "shared" / "data")
    ap.add_argument("--data", default=default_data)
    ap.add_argument("--limit", type=int, default=None, help="first N rows per file")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "grading.json"))
    args = ap.parse_args()
    data = Path(args.data)
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
    results["machine"] = {
        "python": platform.python_version(), "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "limit": args.limit,
        "note": "math-verify runs in one helper process, so grading uses one core",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
