"""`malt report`: Table 1 and turn-wise accuracy as Markdown, with charts, from `malt eval`.

Reads `<run_dir>/eval/results.json` (plus any `--results` files of other tasks, one column
group each) and `<run_dir>/label/summary.json` when present; writes `<run_dir>/report/
report.md`, `<run_dir>/report/accuracy.png` and, when a multi-agent method was evaluated,
`<run_dir>/report/turnwise.png`. Rendering itself is pure (`malt.evaluate.render`, `malt.evaluate.charts`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from malt.config import RunConfig
from malt.errors import MaltError
from malt.evaluate.charts import accuracy_figure, turnwise_figure
from malt.evaluate.render import report_markdown, turnwise_methods
from malt.io import atomic_open, ensure_writable, read_json

CHART = "accuracy.png"
TURNWISE_CHART = "turnwise.png"
REQUIRED = ("task", "order", "methods", "seeds", "chains", "test", "test_split",
            "test_questions", "questions_per_seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--results FILE ...`: more results.json files (other tasks) to report beside this run."""
    parser.add_argument("--results", nargs="+", default=[], metavar="FILE",
                        help="extra eval results.json files, e.g. of the run for another task")


def main(cfg: RunConfig, args: argparse.Namespace) -> dict[str, Any]:
    """CLI entry: render and write the report; returns the paths written."""
    return run(cfg, extra=[Path(p) for p in getattr(args, "results", [])])


def run(cfg: RunConfig, extra: list[Path] | None = None) -> dict[str, Any]:
    """Write report.md, accuracy.png (and turnwise.png) under `<run_dir>/report/`."""
    paths = [cfg.stage_dir("eval") / "results.json", *(extra or [])]
    results_list = [load_results(p) for p in paths]
    label_path = cfg.stage_dir("label") / "summary.json"
    label_summary = read_json(label_path) if label_path.is_file() else None
    out = ensure_writable(cfg.stage_dir("report"))
    save_png(accuracy_figure(results_list), out / CHART)
    turnwise = any(turnwise_methods(r) for r in results_list)
    if turnwise:
        save_png(turnwise_figure(results_list), out / TURNWISE_CHART)
    else:
        (out / TURNWISE_CHART).unlink(missing_ok=True)  # an older report's chart would mislead
    text = report_markdown(results_list, label_summary, chart=CHART,
                           turnwise_chart=TURNWISE_CHART if turnwise else None)
    with atomic_open(out / "report.md") as f:
        f.write(text)
    return {"markdown": str(out / "report.md"), "chart": str(out / CHART),
            "turnwise_chart": str(out / TURNWISE_CHART) if turnwise else None,
            "tasks": [r["task"] for r in results_list],
            "role_data": str(label_path) if label_summary is not None else None}


def save_png(fig, path: Path) -> None:
    """Write a matplotlib Figure as PNG, atomically."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")


def load_results(path: Path) -> dict[str, Any]:
    """An eval results.json, checked for the fields the report reads."""
    if not path.is_file():
        raise MaltError(f"{path}: not found; run `malt eval` first")
    res = read_json(path)
    if not isinstance(res, dict):
        raise MaltError(f"{path}: expected a JSON object of eval results")
    for key in REQUIRED:
        if key not in res:
            raise MaltError(f"{path}: field {key!r} is missing (not a `malt eval` results file?)")
    return res
