"""Benchmark: build the embedded base from scratch and record time and base-model quality.

    python bench/embedded_build.py [--out DIR] [--seed 0] [--threads N]
    python bench/embedded_build.py --report src/malt/embedded/assets/base/build_report.json

Writes bench/results/embedded_build.json (build wall time, tokens/s, G accuracy sampled and
greedy, verifier TPR/FPR, G->V->R accuracy). Uses all cores unless --threads is given.
`--report` records a finished build's own report instead of building again (the machine
fields then describe the machine recording it, not the one that built).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

from malt.embedded.build import BuildConfig, build

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="keep the built model here (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--report", help="record this finished build_report.json instead")
    args = parser.parse_args()
    if args.report:
        report = json.loads(Path(args.report).read_text(encoding="utf-8"))
    else:
        cfg = BuildConfig(seed=args.seed, threads=args.threads)
        with tempfile.TemporaryDirectory() as tmp:
            report = build(args.out or Path(tmp) / "base", cfg)
    result = {
        "source": "recorded from " + Path(args.report).name if args.report else "built now",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_average_at_end": os.getloadavg(),
        **{k: report[k] for k in ("build_s", "threads", "params", "train", "probe")},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "embedded_build.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
