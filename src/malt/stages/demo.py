"""`malt demo`: the whole MALT pipeline on the embedded world, on a laptop CPU.

Loads (or builds) the tiny pretrained base, writes seeded `arith` train/test questions,
then runs the ordinary stages in order: generate -> label -> train -> eval -> report. Each
stage writes the same files a real run does, under `<run_dir>/<stage>/`, so any stage can be
inspected or rerun with its own subcommand and the config the demo saves in
`<run_dir>/demo/config.yaml`. Rerunning the demo resumes: finished shards, training phases
and evaluated seeds are kept; a stage whose inputs changed stops with one sentence, and
`--fresh` (or `--restart`) starts the whole run over. It ends with Table 1 and the
turn-wise accuracy as terminal tables, and the paths of the report and its charts.

    malt demo                                    # defaults: src/malt/configs/demo.yaml
    malt demo --questions 100 --test-questions 60 eval.seeds=[0]   # smaller and faster
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

from malt.config import EMBEDDED, RunConfig, save_config
from malt.errors import MaltError
from malt.io import ensure_writable, write_json

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Demo-only flags; everything else is a config override (e.g. eval.seeds=[0])."""
    parser.add_argument("--questions", type=int, default=None,
                        help="training questions to sample trees for (default: task.limit_train)")
    parser.add_argument("--test-questions", type=int, default=200,
                        help="held-out questions written to the test file (default: 200)")
    parser.add_argument("--fresh", "--restart", dest="fresh", action="store_true",
                        help="delete the run directory first instead of resuming it")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def main(cfg: RunConfig, args: argparse.Namespace) -> None:
    """CLI entry: run everything, then show Table 1, turn-wise accuracy and the report's paths."""
    summary = run(cfg, questions=args.questions, test_questions=args.test_questions,
                  fresh=args.fresh, progress=not args.no_progress)
    show_outcome(summary["results"], summary["report"])


def show_outcome(results: dict[str, Any], paths: dict[str, Any]) -> None:
    """Print Table 1 and the turn-wise table (rich), then where the report and charts are."""
    from rich.console import Console

    from malt.evaluate.console import table_one, turnwise_table

    console = Console()
    console.print()
    console.print(table_one(results))
    turns = turnwise_table(results)
    if turns is not None:
        console.print()
        console.print(turns)
    console.print()
    _say(f"Report: {paths['markdown']}")
    charts = [p for p in (paths["chart"], paths.get("turnwise_chart")) if p]
    _say("Charts: " + "\n        ".join(charts))
    if paths.get("explore"):
        _say(f"Explore the trees and chains: {paths['explore']}")


def run(cfg: RunConfig, questions: int | None = None, test_questions: int = 200,
        fresh: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run the demo pipeline in `cfg.run_dir`; returns the timings, report paths and results."""
    from malt.stages import eval as eval_stage
    from malt.stages import explore, generate, label, report, train

    check_arguments(questions, test_questions)
    _quiet_libraries()
    run_dir = Path(cfg.run_dir)
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    ensure_writable(run_dir)
    seconds: dict[str, float] = {}

    def timed(name: str, fn, *a, **kw):
        start = time.perf_counter()
        _say(f"[malt demo] {name} ...")
        result = fn(*a, **kw)
        seconds[name] = round(time.perf_counter() - start, 2)
        _say(f"[malt demo] {name} done in {seconds[name]:.1f}s")
        return result

    timed("base model", _resolve_base, cfg)
    if questions is not None:
        cfg.task.limit_train = questions
    timed("data", write_data, cfg, test_questions)
    save_config(cfg, run_dir / "demo" / "config.yaml")
    timed("generate", generate.run, cfg, progress=progress)
    timed("label", label.run, cfg)
    timed("train", train.run, cfg, progress=progress)
    results = timed("eval", eval_stage.run, cfg, progress=progress)
    paths = timed("report", report.run, cfg)
    paths["explore"] = timed("explore", explore.run, cfg)["page"]
    seconds["total"] = round(sum(seconds.values()), 2)
    write_json(run_dir / "demo" / "timings.json", seconds)
    _say("[malt demo] where the time went: " + ", ".join(
        f"{k} {v:.0f}s" for k, v in seconds.items()))
    return {"seconds": seconds, "report": paths, "results": results}


def check_arguments(questions: int | None, test_questions: int) -> None:
    """Refuse question counts the demo cannot run with, before any work starts."""
    for flag, value in (("--questions", questions), ("--test-questions", test_questions)):
        if value is not None and value < 1:
            raise MaltError(f"{flag}: must be at least 1, got {value}")


def _resolve_base(cfg: RunConfig) -> None:
    """Point every role without its own model at the embedded base (built once if needed)."""
    from malt.embedded import base_model_path

    if cfg.models.base in (None, EMBEDDED):
        cfg.models.base = str(base_model_path())


def write_data(cfg: RunConfig, test_questions: int, n_train: int | None = None) -> None:
    """Seeded arith train/test files under `<run_dir>/data/` (the splits never overlap);
    `n_train` training questions (default: `task.limit_train`, else 300)."""
    from malt.tasks import arith

    data = Path(cfg.run_dir) / "data"
    train_path, test_path = data / "arith_train.jsonl", data / "arith_test.jsonl"
    n_train = n_train or cfg.task.limit_train or 300
    # Same seed and size -> same bytes, so a resumed demo sees the questions it started with.
    arith.write_split(train_path, n_train, split="train", seed=cfg.seed)
    arith.write_split(test_path, test_questions, split="test", seed=cfg.seed)
    cfg.task.train, cfg.task.test = str(train_path), str(test_path)


def _quiet_libraries() -> None:
    """Keep the demo's terminal to malt's own progress: no per-dataset bars or deprecations."""
    import warnings

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def _say(text: str) -> None:
    print(text, flush=True)
