"""`malt label`: trees in -> grade leaves -> values -> labels -> role datasets out.

Reads `<run_dir>/generate/` (or `--trees PATH`) one tree at a time and streams every output,
so memory stays flat however large the forest. On two cores a forked process grades the
trees of a big forest ahead of the one that labels and writes them (`_Grader`); the bytes
written are the same either way. Writes into `<run_dir>/label/`:
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
import multiprocessing as mp
import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from malt.chain import RoleChain
from malt.config import RunConfig, save_config, to_dict
from malt.credit import Grades, assign_values, grade_outputs, grade_tree, set_grades
from malt.diagnostics import Diagnostics
from malt.errors import MaltError
from malt.fingerprint import config_inputs, input_files
from malt.io import (
    DatasetWriter,
    atomic_open,
    ensure_writable,
    iter_tree_lines,
    jsonl_line,
    manifest,
    raw_lines,
    tree_files,
    tree_outputs,
    write_json,
)
from malt.lengths import LengthMeter, load_tokenizer, warning_lines
from malt.records import Tree
from malt.roledata import RoleStats, dpo_row, pair_roles, preference_pairs, sft_nodes, sft_row
from malt.runspec import chain_of
from malt.tasks import get_task
from malt.tasks.base import Task
from malt.tasks.grading import STATUSES

# What the role datasets depend on besides the trees (recorded in the manifest).
CONSUMED_SETTINGS = ("seed", "task.name", "chain", "credit", "data")
SFT_COLUMNS = ("prompt", "completion")
DPO_COLUMNS = ("prompt", "chosen", "rejected")
# MALT (Motwani et al.): "roughly 2k-6k pairs per role and benchmark".
PAPER_PAIRS_PER_ROLE = (2000, 6000)
# A forest of at least this many bytes is read and graded by a second process while this one
# labels and writes; smaller ones are not worth starting it for.
GRADER_FROM_BYTES = 16 << 20
GRADER_BATCH = 4  # tree lines per message from the grading process
GRADER_LEAD = 16  # lines a grader that fell behind skips past the labelling process

Graded = tuple[Grades, Counter]  # a tree's grades and the statuses of its answers


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
    # The grading process is forked first, before any thread, tokenizer or open file.
    with _graded_trees(source, task, chain) as items, ThreadPoolExecutor(1) as pool:
        # Each shard's sha256 for the manifest, meanwhile (hashlib lets go of the GIL).
        hashes = pool.submit(input_files, tree_files(source), cfg.run_dir)
        summary, errors = _label_forest(items, cfg, task, chain, out)
        shards = hashes.result()
    _write_provenance(cfg, source, out, summary, errors, shards)
    if errors:
        raise MaltError(
            f"{len(errors)} malformed tree(s) skipped, first: {errors[0]}; the other "
            f"{summary['trees']} trees were labelled (see {out / 'errors.txt'})"
        )
    if summary["trees"] == 0:
        raise MaltError(f"{source}: no trees to label")
    return summary


def _label_forest(items: Iterator[tuple[Tree | MaltError, Graded | None]], cfg: RunConfig,
                  task: Task, chain: RoleChain, out: Path) -> tuple[dict[str, Any], list[str]]:
    """Label the trees and write the datasets and labels.jsonl; the summary and the errors."""
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
        with atomic_open(out / "labels.jsonl", "wb") as labels:
            for item, graded in items:
                if isinstance(item, MaltError):
                    errors.append(str(item))
                    continue
                tree = _label_tree(item, graded, task, cfg, chain, answers)
                _write_tree(tree, writers, stats, cfg, chain, meters, diagnostics)
                labels.write(_labels_line(tree))
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
    return summary, errors


def _label_tree(tree: Tree, graded: Graded | None, task: Task, cfg: RunConfig,
                chain: RoleChain, answers: Counter) -> Tree:
    """Grade the tree (or take the grading process's grades), then its values and labels."""
    if graded is None:
        grade_tree(tree, task, answers, chain=chain)
    else:
        grades, statuses = graded
        set_grades(tree, grades)
        answers.update(statuses)
    return assign_values(tree, cfg.credit.pooling, cfg.credit.threshold)


@contextmanager
def _graded_trees(source: Path, task: Task, chain: RoleChain
                 ) -> Iterator[Iterator[tuple[Tree | MaltError, Graded | None]]]:
    """Each tree line of `source` as a Tree (or the MaltError naming its line), with its
    grades where a second process made them (None: grade the tree here).

    For a big forest on two cores a forked process reads and grades the trees ahead of
    this one (`_Grader`); it only saves time: any tree it has not graded, or graded from
    other texts than this process read, is graded here, so the outcome is that of one
    process.
    """
    files = tree_files(source)
    grader = _Grader(files, task, chain) if _grader_pays(files) else None
    try:
        yield _trees(source, grader)
    finally:
        if grader is not None:
            grader.close()


def _trees(source: Path, grader: _Grader | None
           ) -> Iterator[tuple[Tree | MaltError, Graded | None]]:
    # The ordinal of a line among all lines of all files, as the grader counts them.
    for ordinal, item in enumerate(iter_tree_lines(source)):
        graded = None
        if grader is not None and isinstance(item, Tree):
            graded = grader.grades(ordinal, item)
        yield item, graded


def _grader_pays(files: list[Path]) -> bool:
    """Whether a grading process saves time: a big forest, two cores, and fork is safe here
    (no other thread, whose locks a forked copy could find held)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return ((cores or 1) >= 2 and "fork" in mp.get_all_start_methods()
            and threading.active_count() == 1
            and sum(f.stat().st_size for f in files) >= GRADER_FROM_BYTES)


def _grading_key(gold: Any, outputs: list[tuple[Any, Any]]) -> int:
    """A hash of all that grades depend on: the gold answer and each node's role and
    completion. Grades are taken only for the texts they were made from (a forked process
    hashes strings as its parent does)."""
    return hash((gold, tuple(outputs)))


class _Grader:
    """A forked process that reads the shards and grades their trees ahead of this one.

    It sends batches of (line ordinal, grading key, grades) and ends with the last line; it
    stops early (nothing to send, or it failed) without harm, since this process grades
    any tree it has no grades for. It is never waited for: a tree it has not reached yet
    is graded here, and the grader, seeing this process's line, skips to the lines ahead.
    """

    def __init__(self, files: list[Path], task: Task, chain: RoleChain):
        ctx = mp.get_context("fork")
        self._receive, send = ctx.Pipe(duplex=False)
        self._at = ctx.RawValue("q", -1)  # the line this process is at
        self._process = ctx.Process(target=_grade_shards,
                                    args=(send, self._at, files, task, chain), daemon=True)
        self._process.start()
        send.close()
        self._pending: deque[tuple[int, int | None, Graded | None]] = deque()
        self._done = False

    def grades(self, ordinal: int, tree: Tree) -> Graded | None:
        """The grades of `tree`, on line `ordinal`, when the grader has already graded
        the same texts; else None."""
        self._at.value = ordinal
        pending = self._pending
        while True:
            while pending and pending[0][0] < ordinal:
                pending.popleft()
            if pending:
                at, key, graded = pending[0]
                if at != ordinal or graded is None:
                    return None
                outputs = [(n.role, n.completion) for n in tree.nodes]
                return graded if key == _grading_key(tree.problem.answer, outputs) else None
            if self._done or not self._receive.poll():
                return None
            try:
                pending.extend(self._receive.recv())
            except (EOFError, OSError):
                self._done = True

    def close(self) -> None:
        """Stop the process (done, or its grades are no longer wanted)."""
        self._receive.close()
        self._process.terminate()
        self._process.join()


def _grade_shards(send: Connection, at: Any, files: list[Path], task: Task,
                  chain: RoleChain) -> None:
    """The grading process (`_Grader`): `at` holds the line the labelling process is at."""
    try:
        ordinal, start, batch = 0, -1, []
        for file in files:
            for _, raw in raw_lines(file):
                if ordinal <= at.value:  # overtaken: leave the lines just ahead to it
                    start = at.value + GRADER_LEAD
                if ordinal > start:
                    batch.append((ordinal, *_graded(raw, task, chain)))
                    if len(batch) == GRADER_BATCH:
                        send.send(batch)
                        batch = []
                ordinal += 1
        if batch:
            send.send(batch)
    except (Exception, KeyboardInterrupt):  # noqa: BLE001 - the trees left are graded there
        pass


def _graded(raw: bytes, task: Task, chain: RoleChain) -> tuple[int | None, Graded | None]:
    """The grading key of the tree on a line, its grades and its answers' statuses (None,
    None: not graded)."""
    outputs = tree_outputs(raw)
    if outputs is None:
        return None, None
    gold, pairs = outputs
    statuses: Counter = Counter()
    try:
        return (_grading_key(gold, pairs),
                (grade_outputs(pairs, gold, task, statuses, chain=chain), statuses))
    except Exception:  # noqa: BLE001 - a malformed tree, named where it is read
        return None, None


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
    # Rows of a tree read by `iter_tree_lines` hold only strings (its types are checked).
    for node in sft_nodes(tree):
        row, name = sft_row(node), f"sft_{slot[node.role]}"
        writers[name].write(row, checked=True)
        if meter := meters.get(name):
            meter.add(row)
        stats.sft_rows[slot[node.role]] += 1
    seen = set()
    pairs = list(preference_pairs(tree, cfg.data.max_pairs_per_parent, cfg.seed,
                                  pair_roles(chain)))
    diagnostics.add_tree(tree, pairs)
    for chosen, rejected in pairs:
        row, name = dpo_row(chosen, rejected), f"dpo_{slot[chosen.role]}"
        writers[name].write(row, checked=True)
        if meter := meters.get(name):
            meter.add(row)
        stats.dpo_pairs[slot[chosen.role]] += 1
        seen.add(slot[chosen.role])
    for name in stats.trees_without_pairs:
        stats.trees_without_pairs[name] += name not in seen


def _labels_line(tree: Tree) -> bytes:
    """The labels row of a graded and valued tree as a JSONL line."""
    # Ids and gold are checked strings, rewards 0/1 and labels booleans, so the row holds
    # only what `jsonl_line` lets orjson write when every answer is a string (or None) and
    # every value is 0 or at least 1e-4 (a mean over fewer than 10,000 leaves always is).
    plain = all((n.answer is None or type(n.answer) is str)
                and (n.value == 0 or 1e-4 <= n.value < 1e16) for n in tree.nodes)
    return jsonl_line(_labels_row(tree), checked=plain)


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
                      errors: list[str], shards: dict[str, str | None]) -> None:
    save_config(cfg, out / "config.yaml")
    write_json(out / "summary.json", summary)
    consumed = {**config_inputs(to_dict(cfg), CONSUMED_SETTINGS), **shards}
    write_json(out / "manifest.json", manifest({"stage": "label", "trees": str(source),
                                                "consumed": consumed}))
    if errors:
        with atomic_open(out / "errors.txt") as f:
            f.write("\n".join(errors) + "\n")
    else:
        (out / "errors.txt").unlink(missing_ok=True)
