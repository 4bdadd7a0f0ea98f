"""How the demo's generator learning rate was chosen: on a dev split, never on the test split.

    python bench/demo_dev.py [--out bench/results/demo_dev.json] [--lrs 1e-3 2e-4 1e-4 5e-5]

Runs the demo's generate, label and train stages once (its config, its 300 training
questions), writes a dev split of 200 train-side questions that are not among the training
trees' questions, then for each generator SFT learning rate retrains the generator alone and
evaluates every Table-1 method on the dev split (3 seeds x 100 questions, 3 chains). Writes
per rate: each method's mean accuracy, MALT's turn-wise accuracy, its fixed/broken chains and
the paired CI of MALT minus STaR SA + MV. About 4 minutes plus 2.5 per rate on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from malt.config import load_config
from malt.runspec import CHECKS
from malt.stages import demo, generate, label, train
from malt.stages import eval as eval_stage
from malt.tasks.arith import generate as arith_problems
from malt.tasks.arith import to_row

DEV_QUESTIONS = 200


def dev_split(train_file: Path, out: Path) -> int:
    """Train-split questions (seed 10,000) outside the training file: the dev split."""
    seen = {json.loads(line)["question"] for line in train_file.read_text().splitlines()}
    rows = [to_row(p) for p in arith_problems(2 * DEV_QUESTIONS, "train", seed=10_000)
            if p.question not in seen][:DEV_QUESTIONS]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


def summarize(results: dict) -> dict:
    m = results["methods"]
    seeds = m["malt"]["per_seed"].values()
    ci = results["comparisons"]["vs"]["star_sa_mv"]
    return {
        "accuracy": {name: round(v["mean"], 4) for name, v in m.items()},
        "malt_turnwise": {r: round(v["mean"], 4) for r, v in m["malt"]["turnwise"].items()},
        "malt_fixed": sum(v["fixed"] for v in seeds),
        "malt_broken": sum(v["broken"] for v in seeds),
        "malt_minus_star_sa_mv": {k: round(ci[k], 4) for k in ("diff", "ci_low", "ci_high")},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/demo_dev.json")
    ap.add_argument("--lrs", nargs="+", type=float, default=[1e-3, 2e-4, 1e-4, 5e-5])
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="malt-demo-dev-"))
    base = [f"run_dir={root / 'run'}"]
    cfg = load_config(demo.DEFAULT_CONFIG, base, checks=CHECKS)
    start = time.perf_counter()
    demo.write_data(cfg, DEV_QUESTIONS)  # the demo's training questions (and a test file)
    train_file = Path(cfg.task.train)
    generate.run(cfg, progress=False)
    label.run(cfg)
    train.run(cfg, progress=False)
    dev = root / "dev.jsonl"
    n_dev = dev_split(train_file, dev)
    rows = []
    for lr in args.lrs:
        run = root / f"lr{lr:g}"
        shutil.copytree(root / "run", run, ignore=shutil.ignore_patterns("eval", "report"))
        over = [f"run_dir={run}", f"task.train={train_file}", f"task.test={dev}",
                f"train.generator.sft_learning_rate={lr}"]
        cfg = load_config(demo.DEFAULT_CONFIG, over, checks=CHECKS)
        train.run(cfg, roles=["generator"], restart=True, progress=False)
        rows.append({"generator_sft_learning_rate": lr, **summarize(eval_stage.run(cfg))})
        print(json.dumps(rows[-1]), flush=True)
    out = {"what": "demo config on a dev split (train-side questions outside the trees)",
           "dev_questions": n_dev, "seconds": round(time.perf_counter() - start), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
