"""`malt explore`: one self-contained HTML page to browse a run's trees, credit and eval chains.

Reads `<run_dir>/generate/` (or `--trees PATH`) one tree at a time, labels each tree again
with the settings the role datasets were made with (the label stage's saved
`<run_dir>/label/config.yaml` when there is one, else this command's config), and recomputes
which SFT set and DPO pairs every node fed, since the datasets themselves carry no node ids.
When `<run_dir>/eval/records/` exists, the eval records of the methods in
`eval/results.json` are regrouped by question. Writes `<run_dir>/report/explore.html`, which
opens from disk with no server or network; rendering itself is pure (`malt.explore`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from malt.chain import RoleChain
from malt.config import RunConfig, load_config
from malt.credit import label_tree
from malt.errors import MaltError
from malt.explore import eval_questions, page_parts
from malt.io import atomic_open, ensure_writable, read_json, read_jsonl, read_trees
from malt.records import Node, Tree
from malt.roledata import pair_roles, preference_pairs
from malt.runspec import CHECKS, chain_of
from malt.tasks import get_task

PAGE = "explore.html"


def label_diagnostics(label_dir: Path) -> dict[str, Any] | None:
    """The label summary's per-role diagnostics, when the run has been labelled."""
    path = label_dir / "summary.json"
    summary = read_json(path) if path.is_file() else None
    return summary.get("diagnostics") if isinstance(summary, dict) else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trees", help="tree shard or folder (default: <run_dir>/generate)")


def main(cfg: RunConfig, args: argparse.Namespace) -> dict[str, Any]:
    """CLI entry: write the page; returns what it holds and where it is."""
    return run(cfg, trees=getattr(args, "trees", None))


def run(cfg: RunConfig, trees: str | Path | None = None) -> dict[str, Any]:
    """Write `<run_dir>/report/explore.html`; returns its path and what it shows."""
    source = Path(trees) if trees is not None else cfg.stage_dir("generate")
    if not source.exists():
        raise MaltError(f"{source}: no trees found; run `malt generate` first")
    settings, settings_from = label_settings(cfg)
    chain = chain_of(settings)
    methods, records = read_eval(cfg.stage_dir("eval"))
    questions = eval_questions(methods, records)
    meta = {"run_dir": str(cfg.run_dir), "task": settings.task.name, "settings": settings_from,
            "pooling": settings.credit.pooling, "threshold": settings.credit.threshold,
            "max_pairs_per_parent": settings.data.max_pairs_per_parent}
    counted = {"trees": 0, "pairs": 0}
    out = ensure_writable(cfg.stage_dir("report")) / PAGE
    with atomic_open(out) as f:
        parts = page_parts(meta, labelled(source, settings, chain, counted), chain, questions,
                           label_diagnostics(cfg.stage_dir("label")))
        for part in parts:
            f.write(part)
        if counted["trees"] == 0:  # raised inside, so the empty page is never kept
            raise MaltError(f"{source}: no trees found in the tree shards")
    return {"page": str(out), "trees": counted["trees"], "dpo_pairs": counted["pairs"],
            "eval_questions": len(questions), "eval_methods": [m["name"] for m in methods],
            "settings": settings_from}


def label_settings(cfg: RunConfig) -> tuple[RunConfig, str]:
    """The config the role datasets were made with, and where it came from: the label
    stage's saved config when present (its run_dir replaced by this one, in case the run
    moved), else `cfg` itself."""
    saved = cfg.stage_dir("label") / "config.yaml"
    if not saved.is_file():
        return cfg, "this command's config (no label/config.yaml yet)"
    loaded = load_config(saved, checks=CHECKS)
    return dataclasses.replace(loaded, run_dir=cfg.run_dir), "label/config.yaml"


def labelled(source: Path, cfg: RunConfig, chain: RoleChain, counted: dict[str, int]
             ) -> Iterator[tuple[Tree, Sequence[tuple[Node, Node]]]]:
    """Each tree graded, valued and labelled as `malt label` does, with its DPO pairs."""
    task = get_task(cfg.task.name)
    roles = pair_roles(chain)
    for tree in read_trees(source):
        label_tree(tree, task, cfg.credit.pooling, cfg.credit.threshold, chain=chain)
        pairs = list(preference_pairs(tree, cfg.data.max_pairs_per_parent, cfg.seed, roles))
        counted["trees"] += 1
        counted["pairs"] += len(pairs)
        yield tree, pairs


def read_eval(eval_dir: Path) -> tuple[list[dict[str, Any]], dict[tuple[str, int], list[dict[str, Any]]]]:
    """The evaluated methods (name, label, roles; in results.json's order) and their records
    per (method, seed); nothing when the run has no eval records.

    Without results.json, every records folder counts, with its name as its label. Records
    of a method the results no longer list (an earlier eval in the same folder) are left out.
    """
    if not (eval_dir / "records").is_dir():
        return [], {}
    results_file = eval_dir / "results.json"
    if results_file.is_file():
        res = read_json(results_file)
        if not isinstance(res, dict) or not isinstance(res.get("methods"), dict):
            raise MaltError(f"{results_file}: expected the results of `malt eval` (a 'methods' table)")
        table = res["methods"]
        methods = [{"name": n, "label": table[n].get("label", n), "roles": table[n].get("roles")}
                   for n in res.get("order", list(table)) if n in table]
    else:
        methods = [{"name": d.name, "label": d.name, "roles": None}
                   for d in sorted((eval_dir / "records").iterdir()) if d.is_dir()]
    records = {}
    for m in methods:
        for path in sorted((eval_dir / "records" / m["name"]).glob("seed*.jsonl")):
            seed = path.stem.removeprefix("seed")
            if seed.isdigit():
                records[(m["name"], int(seed))] = checked_records(path)
    return [m for m in methods if any(k[0] == m["name"] for k in records)], records


def checked_records(path: Path) -> list[dict[str, Any]]:
    """The rows of one records file, each checked for what the page reads."""
    rows = []
    for lineno, row in read_jsonl(path):
        if not isinstance(row.get("id"), str) or not isinstance(row.get("chains"), list) or not all(
                isinstance(c, dict) for c in row["chains"]):
            raise MaltError(f"{path}:{lineno}: not an eval record (needs a string 'id' and a list "
                            "of chain objects 'chains')")
        rows.append(row)
    return rows
