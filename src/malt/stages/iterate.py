"""`malt iterate`: iterative MALT, rounds of generate -> label -> train (-> eval).

Round r runs in `<run_dir>/round-<r>/` with the stages exactly as a single run has them, so
each round resumes like they do (a finished stage is kept, an interrupted one continues, a
changed input is refused). Round 1 is single-round MALT. Round r > 1 samples its trees with
round r-1's final agents (`iterate.sample_with: previous`; `base` keeps the base models) and
continues training round r-1's adapters on its own trees (`iterate.train_from: previous`;
`base`: a fresh adapter each round); `credit.threshold` follows `iterate.thresholds`
(e.g. 0.5, 0.7, 0.9: the paper's "dynamic thresholding"). With `iterate.fresh_questions`
each round takes its own `task.limit_train` training questions (the rounds' slices never
overlap). Before round r+1 starts, the run stops when the last role's sibling groups have
collapsed to one answer in at least `iterate.stop_collapsed` of the trees' groups.

Writes `<run_dir>/iterate/rounds.json` (per round: threshold, trees, leaf accuracy, DPO pairs
per role, diversity, each evaluated method's accuracy) and, with `iterate.eval`,
`<run_dir>/report/rounds.md` and `rounds.png`.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

from malt.artifacts import FINAL, models_path, read_models, resolve
from malt.config import RunConfig, save_config
from malt.errors import MaltError
from malt.io import ensure_writable, write_json
from malt.runspec import chain_of

STAGE = "iterate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, help="number of rounds (default: iterate.rounds)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def main(cfg: RunConfig, args: argparse.Namespace) -> dict[str, Any]:
    if args.rounds is not None:
        if args.rounds < 1:
            raise MaltError(f"--rounds: must be at least 1, got {args.rounds}")
        cfg.iterate.rounds = args.rounds
        if cfg.iterate.thresholds and len(cfg.iterate.thresholds) != args.rounds:
            raise MaltError(f"--rounds {args.rounds}: iterate.thresholds gives "
                            f"{len(cfg.iterate.thresholds)} thresholds")
    return run(cfg, progress=not args.no_progress)


def round_config(cfg: RunConfig, r: int) -> RunConfig:
    """Round r's config: its own run dir, threshold and (when fresh) training questions."""
    sub = copy.deepcopy(cfg)
    sub.run_dir = str(Path(cfg.run_dir) / f"round-{r}")
    if cfg.iterate.thresholds:
        sub.credit.threshold = cfg.iterate.thresholds[r - 1]
    if cfg.iterate.fresh_questions:
        if cfg.task.limit_train is None:
            raise MaltError("iterate.fresh_questions needs task.limit_train (questions per round)")
        sub.task.skip_train = cfg.task.skip_train + cfg.task.limit_train * (r - 1)
    return sub


def run(cfg: RunConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) every round; returns the per-round table."""
    from malt.stages import eval as eval_stage
    from malt.stages import generate, label, report, train

    out = ensure_writable(Path(cfg.run_dir) / STAGE)
    if cfg.task.name == "arith" and cfg.task.train is None:
        from malt.stages.demo import write_data  # the embedded world: seeded questions, as the demo

        per_round = cfg.task.limit_train or 300
        write_data(cfg, test_questions=200,
                   n_train=per_round * (cfg.iterate.rounds if cfg.iterate.fresh_questions else 1))
        cfg.task.limit_train = per_round
    save_config(cfg, out / "config.yaml")
    rounds: list[dict[str, Any]] = []
    previous: RunConfig | None = None
    for r in range(1, cfg.iterate.rounds + 1):
        sub = round_config(cfg, r)
        _say(f"[malt iterate] round {r}: threshold {sub.credit.threshold}")
        models = sampling_models(previous) if previous and cfg.iterate.sample_with == "previous" \
            else None
        if previous is not None and cfg.iterate.train_from == "previous":
            sub.train.start_from = previous.run_dir
        generate.run(sub, progress=progress, models=models)
        summary = label.run(sub)
        train.run(sub, progress=progress)
        row = round_row(r, sub, summary)
        if cfg.iterate.eval:
            results = eval_stage.run(sub, progress=progress)
            report.run(sub)
            row["methods"] = {n: {"mean": m["mean"], "std": m["std"]}
                              for n, m in results["methods"].items()}
            if "comparisons" in results:
                row["comparisons"] = results["comparisons"]["vs"]
        rounds.append(row)
        write_json(out / "rounds.json", {"rounds": rounds})
        previous = sub
        reason = stop_reason(cfg, row)
        if reason:
            row["stopped"] = reason
            write_json(out / "rounds.json", {"rounds": rounds})
            _say(f"[malt iterate] stopping after round {r}: {reason}")
            break
    if cfg.iterate.eval:
        write_rounds_report(cfg, rounds)
    return {"rounds": rounds, "table": str(out / "rounds.json")}


def sampling_models(previous: RunConfig) -> dict[str, Any]:
    """Each role's final agent of the previous round (what round r samples with)."""
    trained = read_models(models_path(previous.run_dir))
    return {role.name: resolve(previous, role.model, FINAL, trained)
            for role in chain_of(previous)}


def round_row(r: int, sub: RunConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """What a round's training trees held: accuracy, pairs, diversity per role."""
    diag = summary.get("diagnostics", {})
    leaf = chain_of(sub).leaf.name
    div = diag.get(leaf, {}).get("diversity") or {}
    groups = div.get("sibling_groups") or 0
    return {
        "round": r, "run_dir": sub.run_dir, "threshold": sub.credit.threshold,
        "trees": summary["trees"], "leaf_accuracy": summary["leaf_accuracy"],
        "dpo_pairs": summary["dpo_pairs"],
        "distinct_answers": {role: d["diversity"]["distinct_answers_mean"]
                             for role, d in diag.items() if d.get("diversity")},
        "collapsed_share": round(div.get("collapsed", 0) / groups, 4) if groups else None,
    }


def stop_reason(cfg: RunConfig, row: dict[str, Any]) -> str | None:
    bound = cfg.iterate.stop_collapsed
    share = row.get("collapsed_share")
    if bound is not None and share is not None and share >= bound:
        return (f"{share:.0%} of the last role's sibling groups gave one answer "
                f"(iterate.stop_collapsed {bound})")
    return None


def write_rounds_report(cfg: RunConfig, rounds: list[dict[str, Any]]) -> None:
    """`report/rounds.md` (per round: accuracy with CI, diversity, pairs) and `rounds.png`."""
    from malt.evaluate.charts import rounds_figure
    from malt.evaluate.render import rounds_markdown
    from malt.stages.report import save_png

    out = ensure_writable(Path(cfg.run_dir) / "report")
    (out / "rounds.md").write_text(rounds_markdown(rounds), encoding="utf-8")
    save_png(rounds_figure(rounds), out / "rounds.png")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
