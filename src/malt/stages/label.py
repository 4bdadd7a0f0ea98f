"""`malt label`: trees in -> grade leaves -> values -> labels -> role datasets out.

Reads `<run_dir>/generate/` (or `--trees PATH`) one tree at a time and streams every output,
so memory stays flat however large the forest. Writes into `<run_dir>/label/`:
`sft_<slot>.jsonl`, `dpo_<slot>.jsonl` (TRL conversational formats; one per model slot of the
chain, `malt.chain`: per role with the default G -> V -> R), `labels.jsonl` (per node:
answer, reward, value, label), `summary.json` (with `answers`: how many outputs of answering roles
stated an answer, none, or one that could not be read; `lengths`: per model slot, p50/p95/max tokens of
the SFT rows and DPO pairs under the role model's tokenizer and how many `train.max_length`
would leave out, see `malt.lengths`; `paper_pairs_per_role`: the paper's pair counts to compare
with `dpo_pairs`), `config.yaml` and `manifest.json` (with `consumed`: the settings and each
tree shard's sha256 the datasets were made from). Labelling is cheap, so a rerun always labels
everything again.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from malt.chain import RoleChain
from malt.config import RunConfig, save_config, to_dict
from malt.credit import label_tree
from malt.diagnostics import Diagnostics
from malt.errors import MaltError
from malt.fingerprint import config_inputs, input_files
from malt.io import (
    DatasetWriter,
    atomic_open,
    dumps,
    ensure_writable,
    iter_tree_lines,
    manifest,
    tree_files,
    write_json,
)
from malt.lengths import LengthMeter, load_tokenizer, warning_lines
from malt.records import Tree
from malt.roledata import RoleStats, dpo_row, pair_roles, preference_pairs, sft_nodes, sft_row
from malt.runspec import chain_of
from malt.tasks import get_task
from malt.tasks.grading import STATUSES

# What the role datasets depend on besides the trees (recorded in the manifest).
CONSUMED_SETTINGS = ("seed", "task.name", "chain", "credit", "data")
SFT_COLUMNS = ("prompt", "completion")
DPO_COLUMNS = ("prompt", "chosen", "rejected")
# MALT (Motwani et al.): "roughly 2k-6k pairs per role and benchmark".
PAPER_PAIRS_PER_ROLE = (2000, 6000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trees", help="tree shard or folder (default: <run_dir>/generate)")


def main(cfg: RunConfig, args: argparse.Namespace) -> dict[str, Any]:
    summary = run(cfg, trees=args.trees)
    for line in report_lines(summary):
        print(f"malt label: {line}", file=sys.stderr)
    return summary


def report_lines(summary: dict[str, Any]) -> list[str]:
    """What a person should see besides the JSON: pair counts against the paper, length warnings."""
    lo, hi = summary["paper_pairs_per_role"]
    lines = []
    for role, n in summary["dpo_pairs"].items():
        if f"dpo_{role}" in summary["files"]:
            where = "below" if n < lo else "above" if n > hi else "within"
            lines.append(f"{role}: {n:,} DPO pairs ({where} the paper's roughly {lo:,}-{hi:,} "
                         f"pairs per role and benchmark)")
    for role, report in summary["lengths"].items():  # a note per role, or per dataset
        notes = [report] if "note" in report else [
            t for t in report.values() if isinstance(t, dict) and "note" in t]
        lines += [f"{role}: {t['note']}" for t in notes]
    lines += [f"warning: {w}" for w in warning_lines(summary["lengths"])]
    return lines


def run(cfg: RunConfig, trees: str | Path | None = None) -> dict[str, Any]:
    """Label every tree and write the role datasets; returns the summary."""
    source = Path(trees) if trees is not None else cfg.stage_dir("generate")
    out = ensure_writable(cfg.stage_dir("label"))
    task = get_task(cfg.task.name)
    chain = chain_of(cfg)
    dpo_slots = tuple(dict.fromkeys(chain.role(r).model for r in pair_roles(chain)))
    writers = {
        **{f"sft_{m}": DatasetWriter(out / f"sft_{m}", cfg.data.format, SFT_COLUMNS)
           for m in chain.models},
        **{f"dpo_{m}": DatasetWriter(out / f"dpo_{m}", cfg.data.format, DPO_COLUMNS)
           for m in dpo_slots},
    }
    meters, lengths = length_meters(cfg, chain.models, dpo_slots)
    stats, errors, answers = RoleStats(chain), [], Counter()
    diagnostics = Diagnostics(chain, task)
    start = time.perf_counter()
    try:
        with atomic_open(out / "labels.jsonl") as labels:
            for item in iter_tree_lines(source):
                if isinstance(item, MaltError):
                    errors.append(str(item))
                    continue
                tree = label_tree(item, task, cfg.credit.pooling, cfg.credit.threshold,
                                  answers, chain=chain)
                _write_tree(tree, writers, stats, cfg, chain, meters, diagnostics)
                labels.write(dumps(_labels_row(tree)) + "\n")
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    files = {name: str(w.close()) for name, w in writers.items()}
    for name, meter in meters.items():
        kind, role = name.split("_", 1)
        lengths[role][kind] = meter.to_dict()
    summary = {
        **stats.to_dict(),
        "paper_pairs_per_role": list(PAPER_PAIRS_PER_ROLE),
        "lengths": lengths,
        "answers": {status: answers[status] for status in STATUSES},  # answering roles' outputs
        "diagnostics": diagnostics.to_dict(),
        "malformed_trees": len(errors),
        "seconds": round(time.perf_counter() - start, 3),
        "files": files,
    }
    _write_provenance(cfg, source, out, summary, errors)
    if errors:
        raise MaltError(
            f"{len(errors)} malformed tree(s) skipped, first: {errors[0]}; the other "
            f"{stats.trees} trees were labelled (see {out / 'errors.txt'})"
        )
    if stats.trees == 0:
        raise MaltError(f"{source}: no trees to label")
    return summary


def length_meters(cfg: RunConfig, slots: tuple[str, ...], dpo_slots: tuple[str, ...]
                  ) -> tuple[dict[str, LengthMeter], dict[str, dict[str, Any]]]:
    """A meter per dataset (named like its file) and each model slot's length report so far.

    Only tokenizers are loaded, once per model; a slot whose model is not set or whose
    tokenizer cannot be loaded gets a note instead of lengths.
    """
    tokenizers: dict[str, tuple[Any, str | None]] = {}
    meters: dict[str, LengthMeter] = {}
    lengths: dict[str, dict[str, Any]] = {}
    for role in slots:
        try:
            model = cfg.models.for_role(role)
        except MaltError as e:
            lengths[role] = {"note": f"lengths not measured: {e}"}
            continue
        if model not in tokenizers:
            tokenizers[model] = load_tokenizer(model, trust_remote_code=cfg.models.trust_remote_code,
                                               revision=cfg.models.revision)
        tok, note = tokenizers[model]
        if tok is None:
            lengths[role] = {"tokenizer": model, "note": note}
            continue
        lengths[role] = {"tokenizer": model}
        meters[f"sft_{role}"] = LengthMeter(tok, "sft", cfg.train.max_length)
        if role in dpo_slots:
            meters[f"dpo_{role}"] = LengthMeter(tok, "dpo", cfg.train.max_length)
    return meters, lengths


def _write_tree(tree: Tree, writers: dict[str, DatasetWriter], stats: RoleStats,
                cfg: RunConfig, chain: RoleChain, meters: dict[str, LengthMeter],
                diagnostics: Diagnostics) -> None:
    stats.add_tree(tree)
    slot = {r.name: r.model for r in chain}
    for node in sft_nodes(tree):
        row = sft_row(node)
        writers[f"sft_{slot[node.role]}"].write(row)
        if meter := meters.get(f"sft_{slot[node.role]}"):
            meter.add(row)
        stats.sft_rows[slot[node.role]] += 1
    seen = set()
    pairs = list(preference_pairs(tree, cfg.data.max_pairs_per_parent, cfg.seed,
                                  pair_roles(chain)))
    diagnostics.add_tree(tree, pairs)
    for chosen, rejected in pairs:
        row = dpo_row(chosen, rejected)
        writers[f"dpo_{slot[chosen.role]}"].write(row)
        if meter := meters.get(f"dpo_{slot[chosen.role]}"):
            meter.add(row)
        stats.dpo_pairs[slot[chosen.role]] += 1
        seen.add(slot[chosen.role])
    for name in stats.trees_without_pairs:
        stats.trees_without_pairs[name] += name not in seen


def _labels_row(tree: Tree) -> dict[str, Any]:
    return {
        "problem_id": tree.problem.id,
        "gold": tree.problem.answer,
        "nodes": [
            {"id": n.id, "answer": n.answer, "reward": n.reward, "value": n.value, "label": n.label}
            for n in tree.nodes
        ],
    }


def _write_provenance(cfg: RunConfig, source: Path, out: Path, summary: dict[str, Any],
                      errors: list[str]) -> None:
    save_config(cfg, out / "config.yaml")
    write_json(out / "summary.json", summary)
    consumed = {**config_inputs(to_dict(cfg), CONSUMED_SETTINGS),
                **input_files(tree_files(source), cfg.run_dir)}
    write_json(out / "manifest.json", manifest({"stage": "label", "trees": str(source),
                                                "consumed": consumed}))
    if errors:
        with atomic_open(out / "errors.txt") as f:
            f.write("\n".join(errors) + "\n")
    else:
        (out / "errors.txt").unlink(missing_ok=True)
