"""Benchmark `malt label` on a GSM8K-train-sized synthetic forest (7,473 trees x 39 nodes).

    python bench/bench_label.py [--trees 7473] [--filler 300]

Writes bench/results/label.json: wall time of the label stage, trees/s, nodes/s, peak
memory of the labelling process (resident set, measured in a fresh child process so the
forest generation does not count) and of the grading process it forks for a big forest on
two cores (0 without one), input size on disk.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

from malt.config import load_config
from malt.io import write_trees
from malt.records import Branching, Problem
from malt.synthetic import synthetic_forest

OUT = Path(__file__).resolve().parent / "results" / "label.json"
BRANCHING = Branching(3, 3, 3)  # the paper's G -> V -> R tree: 39 nodes


def make_forest(folder: Path, n_trees: int, filler: int, shard: int = 512) -> int:
    """Write `n_trees` synthetic GSM8K trees as shards; returns bytes on disk."""
    problems = [
        Problem(id=f"gsm8k-{i:06d}", question=f"Tom has {i} apples and buys 3 more. " * 3,
                answer=str(i + 3), task="gsm8k")
        for i in range(n_trees)
    ]
    trees = synthetic_forest(problems, BRANCHING, seed=0, filler_chars=filler)
    for k in range(0, n_trees, shard):
        chunk = [next(trees) for _ in range(min(shard, n_trees - k))]
        write_trees(folder / f"trees-{k // shard:05d}.jsonl", chunk)
    return sum(p.stat().st_size for p in folder.glob("trees-*.jsonl"))


def _label(run_dir: str, queue: mp.Queue) -> None:
    from malt.stages import label

    cfg = load_config(None, [f"run_dir={run_dir}", "task.name=gsm8k"])
    start = time.perf_counter()
    summary = label.run(cfg)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    grader_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    queue.put({"seconds": seconds, "peak_rss_mib": peak_mib, "grader_peak_rss_mib": grader_mib,
               "summary": summary})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trees", type=int, default=7473)
    ap.add_argument("--filler", type=int, default=300, help="extra characters per completion")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        t0 = time.perf_counter()
        size = make_forest(run_dir / "generate", args.trees, args.filler)
        build_s = time.perf_counter() - t0
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_label, args=(str(run_dir), queue))
        proc.start()
        result = queue.get()
        proc.join()
    nodes = args.trees * BRANCHING.nodes
    s = result["summary"]
    report = {
        "trees": args.trees,
        "nodes": nodes,
        "forest_mib_on_disk": round(size / 2**20, 1),
        "forest_build_seconds": round(build_s, 2),
        "label_seconds": round(result["seconds"], 2),
        "trees_per_second": round(args.trees / result["seconds"], 1),
        "nodes_per_second": round(nodes / result["seconds"], 1),
        "label_peak_rss_mib": round(result["peak_rss_mib"], 1),
        "label_grader_peak_rss_mib": round(result["grader_peak_rss_mib"], 1),
        "sft_rows": s["sft_rows"],
        "dpo_pairs": s["dpo_pairs"],
        "leaf_accuracy": s["leaf_accuracy"],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
