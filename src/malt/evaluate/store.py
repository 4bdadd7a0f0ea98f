"""The eval folder on disk: cached chain chunks, per-method records, and resume settings.

    <run_dir>/eval/settings.json                       what the results were made with
    <run_dir>/eval/chains/<group>/seed<S>/chunk-NNNNN.jsonl    sampled chains, per chunk
    <run_dir>/eval/records/<method>/seed<S>.jsonl      per-question records
    <run_dir>/eval/results.json                        the table and the comparisons

Every file is written atomically, so an interrupted run leaves only whole files behind and
a rerun skips them: finished (method, seed) records are kept, finished chunks are reused.
`settings.json` records the settings and every model's fingerprint (by content) the files
were made with; a rerun with other ones is refused, and `--restart` clears the folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from malt.errors import MaltError
from malt.evaluate.chains import Chain, prompt_counted
from malt.fingerprint import check_unchanged
from malt.io import read_json, read_jsonl, write_json, write_jsonl
from malt.records import Problem


def records_path(eval_dir: Path, method: str, seed: int) -> Path:
    return eval_dir / "records" / method / f"seed{seed}.jsonl"


def chunk_path(eval_dir: Path, group: str, seed: int, index: int) -> Path:
    """A chunk of one group's chains (`malt.evaluate.methods.groups`: `base`, `sft`, `final`
    for the whole chain from one source)."""
    return eval_dir / "chains" / group / f"seed{seed}" / f"chunk-{index:05d}.jsonl"


def read_records(path: Path) -> list[dict[str, Any]]:
    """All records of one finished (method, seed) file."""
    return [row for _, row in read_jsonl(path)]


def records_complete(path: Path, problems: Sequence[Problem]) -> bool:
    """Whether a records file exists, covers exactly these questions and has today's layout."""
    if not path.is_file():
        return False
    rows = read_records(path)
    return [r.get("id") for r in rows] == [p.id for p in problems] and all(map(current_layout, rows))


def current_layout(row: dict[str, Any]) -> bool:
    """False for a multi-agent record written before turn-wise votes (rebuilt from the chains).

    >>> current_layout({"chains": [{"generator": "g", "generator_answer": "1", "answer": "1"}]})
    False
    >>> current_layout({"chains": [{"generator": "g", "answer": "1"}]})
    True
    """
    multi = any(k.endswith("_answer") for c in row.get("chains", ()) for k in c)
    return not multi or "turns" in row


def write_records(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    write_jsonl(path, rows)


def load_chunk(
    path: Path, problems: Sequence[Problem], k: int, roles: Sequence[str]
) -> list[list[Chain]] | None:
    """A cached chunk when it covers these questions with k chains of these roles, else None."""
    if not path.is_file():
        return None
    rows = [row for _, row in read_jsonl(path)]
    if [r.get("id") for r in rows] != [p.id for p in problems]:
        return None
    try:
        chains = [[Chain.from_dict(c) for c in r["chains"]] for r in rows]
    except (KeyError, TypeError):
        return None  # a foreign or older layout: sample this chunk again
    if any(len(cs) < k or any(c.roles != tuple(roles) for c in cs) for cs in chains):
        return None
    return chains


def save_chunk(path: Path, problems: Sequence[Problem], chains: Sequence[Sequence[Chain]]) -> None:
    write_jsonl(path, ({"id": p.id, "chains": [c.to_dict() for c in cs]}
                       for p, cs in zip(problems, chains, strict=True)))


def ledger(eval_dir: Path) -> dict[str, dict[str, dict[str, int]]]:
    """Tokens the backend reported for every cached chain, per group and role: prompts and
    their tokens (a question's first-role prompt once: its k samples are one call), samples
    and their completion tokens."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for path in sorted((eval_dir / "chains").glob("*/seed*/chunk-*.jsonl")):
        group = out.setdefault(path.parent.parent.name, {})
        for _, row in read_jsonl(path):
            for i, chain in enumerate(row.get("chains", ())):
                for j, step in enumerate(chain.get("steps", ())):
                    counts = group.setdefault(step["role"], dict.fromkeys(
                        ("prompts", "prompt_tokens", "samples", "completion_tokens"), 0))
                    counts["samples"] += 1
                    counts["completion_tokens"] += step.get("num_tokens") or 0
                    if prompt_counted(i, j):
                        counts["prompts"] += 1
                        counts["prompt_tokens"] += step.get("prompt_tokens") or 0
    return out


RESTART = "evaluate again from scratch"


def check_settings(path: Path, settings: dict[str, Any]) -> None:
    """Refuse to mix results made under other settings or models; record them on first use.

    `settings["fingerprints"]` names each model and adapter by content; it may grow (a
    source evaluated for the first time) but an entry never changes.
    """
    old = read_settings(path)
    fingerprints = settings["fingerprints"]
    if old is not None:
        # The same test file under another path (a moved checkout) is still the same data.
        same_data = old.get("test_sha256") is not None and old.get("test_sha256") == settings.get(
            "test_sha256")
        for key, value in settings.items():
            if key == "fingerprints" or (key == "test" and same_data):
                continue
            if old.get(key) != value:
                raise MaltError(
                    f"{path}: earlier results used {key}={old.get(key)!r}, now {value!r}; "
                    f"use a new run_dir, or pass --restart to {RESTART}"
                )
        check_unchanged(old.get("fingerprints"), fingerprints, path,
                        "these results were made", RESTART, common_only=True)
        fingerprints = {**old["fingerprints"], **fingerprints}
    write_json(path, {**settings, "fingerprints": fingerprints})


def read_settings(path: Path) -> dict[str, Any] | None:
    """An earlier run's settings.json (None when there is none), checked for its shape."""
    if not path.is_file():
        return None
    old = read_json(path)
    if not isinstance(old, dict) or not isinstance(old.get("fingerprints", {}), dict):
        raise MaltError(f"{path}: not a `malt eval` settings file (expected a mapping with a "
                        f"'fingerprints' mapping); pass --restart to {RESTART}")
    return old


def clear(eval_dir: Path) -> None:
    """Delete an eval folder's results, records, cached chains and settings (`--restart`)."""
    for name in ("records", "chains"):
        shutil.rmtree(eval_dir / name, ignore_errors=True)
    for name in ("settings.json", "results.json"):
        (eval_dir / name).unlink(missing_ok=True)
