"""Benchmark what `malt eval` costs besides the model: grading, votes, records, bootstrap.

    python bench/bench_eval.py [--task gsm8k] [--seeds 3] [--chains 3] [--subset N]

Runs every method of Table 1 over a full public test split through an instant in-process
backend (answers are drawn per prompt seed: right about half the time, otherwise a random
wrong number or letter), so the time measured is the harness's own: answer extraction,
equivalence classes, grading with the task's real checker (math-verify for MATH), record
files, results and the paired bootstrap. Separately times one paired bootstrap over the
same (seed, question) units. Writes bench/results/eval_<task>.json. Test data: $MALT_SHARED_DATA,
else ../shared/data beside the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import tempfile
import time
from pathlib import Path

from malt.backends.base import Completion
from malt.chain import DEFAULT_NAMES as ROLES
from malt.chain import GENERATOR, REFINER
from malt.config import load_config
from malt.evaluate.stats import paired_bootstrap
from malt.stages import eval as eval_stage
from malt.tasks import get_task

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
TEST_FILES = {"gsm8k": "gsm8k/test.jsonl", "math": "math/test.jsonl",
              "csqa": "commonsenseqa/dev_rand_split.jsonl"}
_FINAL = re.compile(r"Final Answer: (.*)")


class InstantBackend:
    """Answers in microseconds: the generator is right with probability 1/2 per seed."""

    def __init__(self, golds: dict[str, str], letters: bool):
        self.golds, self.letters, self.generations = golds, letters, 0

    def wrong(self, rng: random.Random) -> str:
        return rng.choice("ABCDE") if self.letters else str(rng.randint(0, 999))

    def generate(self, role, prompts, params, seeds):
        out = []
        for messages, seed in zip(prompts, seeds, strict=True):
            rng = random.Random(seed)
            out.append([Completion(self._text(role, messages, rng), 8, "stop")
                        for _ in range(params.n)])
            self.generations += params.n
        return out

    def _text(self, role, messages, rng) -> str:
        content = messages[-1]["content"]
        if role == GENERATOR:
            gold = self.golds.get(content) or self.wrong(rng)
            return f"Working. Final Answer: {gold if rng.random() < 0.5 else self.wrong(rng)}"
        if role == REFINER:
            found = _FINAL.search(content)
            return f"Refined. Final Answer: {found.group(1) if found else self.wrong(rng)}"
        return "The reasoning looks fine."

    def close(self) -> None:
        pass


def data_dir() -> Path:
    return Path(os.environ.get("MALT_SHARED_DATA", REPO.parent / "shared" / "data"))


def fake_training(run_dir: Path) -> None:
    """models.json with empty adapter folders: the instant backend never loads them."""
    models = {}
    for role in ROLES:
        models[role] = {}
        for stage in ("sft", "final"):
            folder = run_dir / "train" / role / stage
            folder.mkdir(parents=True)
            (folder / "adapter_config.json").write_text("{}")
            models[role][stage] = {"model": "base", "adapter": str(folder)}
    (run_dir / "train" / "models.json").write_text(json.dumps(models))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--task", default="gsm8k", choices=sorted(TEST_FILES))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--chains", type=int, default=3)
    ap.add_argument("--subset", type=int, default=None, help="questions per seed (default: all)")
    ap.add_argument("--samples", type=int, default=10000, help="bootstrap resamples")
    args = ap.parse_args()
    test = data_dir() / TEST_FILES[args.task]
    task = get_task(args.task)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        fake_training(run_dir)
        cfg = load_config(None, [
            f"run_dir={run_dir}", f"task.name={args.task}", f"task.test={test}",
            "models.base=base", f"eval.seeds={list(range(args.seeds))}",
            f"eval.chains={args.chains}", f"eval.bootstrap_samples={args.samples}",
            f"eval.subset_size={'null' if args.subset is None else args.subset}"])
        problems = task.load(str(test), cfg.task.test_split)
        golds = {task.messages(GENERATOR, p)[-1]["content"]: p.answer for p in problems}
        backends: list[InstantBackend] = []

        def factory(models):
            backends.append(InstantBackend(golds, letters=args.task == "csqa"))
            return backends[-1]

        start = time.perf_counter()
        results = eval_stage.run(cfg, task=task, backend_factory=factory)
        wall = time.perf_counter() - start
        start = time.perf_counter()
        eval_stage.run(cfg, task=task, backend_factory=factory)  # everything cached
        rerun = time.perf_counter() - start
    per_seed = results["questions_per_seed"]["0"]
    units = {(s, str(i)): bool(i % 2) for s in range(args.seeds) for i in range(per_seed)}
    rng = random.Random(0)
    other = {u: rng.random() < 0.6 for u in units}
    start = time.perf_counter()
    paired_bootstrap(units, other, samples=args.samples, seed=0)
    boot = time.perf_counter() - start
    report = {
        "task": args.task, "test_questions": len(problems), "questions_per_seed": per_seed,
        "seeds": args.seeds, "chains": args.chains, "methods": len(results["methods"]),
        "generations": sum(b.generations for b in backends),
        "eval_wall_seconds": round(wall, 2),
        "method_seed_question_records_per_second": round(
            len(results["methods"]) * args.seeds * per_seed / wall, 1),
        "resume_all_cached_seconds": round(rerun, 2),
        "bootstrap_units": len(units), "bootstrap_samples": args.samples,
        "bootstrap_seconds": round(boot, 3),
        "accuracy": {n: round(m["mean"], 4) for n, m in results["methods"].items()},
        "cpu_count": os.cpu_count(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"eval_{args.task}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
