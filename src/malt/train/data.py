"""Role datasets for training: read and check the label stage's TRL conversational files.

SFT rows are `{"prompt": [system, user], "completion": [assistant]}`; DPO rows are
`{"prompt": [...], "chosen": [assistant], "rejected": [assistant]}`. Every row is checked
before training so that a malformed one ends in an error naming its file and line, not in a
tokenizer traceback minutes later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from malt.errors import MaltError
from malt.io import read_jsonl, read_parquet_rows, reading
from malt.lengths import split_by_fit

SFT_COLUMNS = ("prompt", "completion")
DPO_COLUMNS = ("prompt", "chosen", "rejected")


def dataset_path(label_dir: str | Path, kind: str, role: str, fmt: str = "jsonl") -> Path:
    """Where the label stage writes `kind` (sft | dpo) rows for `role`."""
    return Path(label_dir) / f"{kind}_{role}.{fmt}"


def check_messages(value: Any, field: str, assistant_only: bool) -> str | None:
    """Why `value` is not a valid message list (None when it is).

    >>> check_messages([{"role": "user", "content": "2+2?"}], "prompt", False) is None
    True
    >>> check_messages([{"role": "user", "content": "4"}], "completion", True)
    "completion: expected one assistant message, got role 'user'"
    >>> check_messages("4", "chosen", True)
    'chosen: expected a list of messages, got str'
    """
    if not isinstance(value, list) or not value:
        kind = type(value).__name__ if not isinstance(value, list) else "an empty list"
        return f"{field}: expected a list of messages, got {kind}"
    for i, msg in enumerate(value):
        if not isinstance(msg, dict) or not isinstance(msg.get("content"), str):
            return f"{field}[{i}]: expected {{'role': ..., 'content': <text>}}"
        if not isinstance(msg.get("role"), str):
            return f"{field}[{i}].role: expected a string"
    if assistant_only:
        if len(value) != 1 or value[0]["role"] != "assistant":
            return f"{field}: expected one assistant message, got role {value[0]['role']!r}" + (
                "" if len(value) == 1 else f" and {len(value) - 1} more"
            )
    return None


def check_row(row: dict[str, Any], columns: tuple[str, ...]) -> str | None:
    """Why `row` is not a valid SFT/DPO row (None when it is)."""
    for column in columns:
        if column not in row:
            return f"missing column {column!r}"
        why = check_messages(row[column], column, assistant_only=column != "prompt")
        if why:
            return why
    return None


def read_rows(path: Path, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """All rows of a JSONL or Parquet role file, each checked; errors name file:line."""
    if not path.is_file():
        raise MaltError(f"{path}: no such file (run `malt label` first, or check data.format)")
    if path.suffix == ".parquet":
        numbered = enumerate(read_parquet_rows(path), start=1)
    else:
        numbered = read_jsonl(path)
    rows = []
    with reading(path):  # an unreadable file is one sentence, like a malformed row
        for lineno, row in numbered:
            why = check_row(row, columns)
            if why:
                where = f"row {lineno}" if path.suffix == ".parquet" else str(lineno)
                raise MaltError(f"{path}:{where}: {why}")
            rows.append({c: row[c] for c in columns})
    return rows


def role_files(label_dir: str | Path, role: str, kinds: tuple[str, ...],
               fmt: str = "jsonl") -> list[Path]:
    """Every row of `role`'s `kinds` files checked (errors name file:line); their paths."""
    paths = [dataset_path(label_dir, kind, role, fmt) for kind in kinds]
    for kind, path in zip(kinds, paths, strict=True):
        read_rows(path, SFT_COLUMNS if kind == "sft" else DPO_COLUMNS)
    return paths


def load_dataset(label_dir: str | Path, kind: str, role: str, fmt: str = "jsonl"):
    """The checked `kind` rows of `role` as a `datasets.Dataset` (possibly empty)."""
    from datasets import Dataset

    columns = SFT_COLUMNS if kind == "sft" else DPO_COLUMNS
    rows = read_rows(dataset_path(label_dir, kind, role, fmt), columns)
    if not rows:
        return Dataset.from_dict({c: [] for c in columns})
    return Dataset.from_list(rows)


def keep_fitting_rows(dataset, tokenizer, kind: str, max_length: int) -> tuple[Any, dict[str, Any]]:
    """The `kind` (sft | dpo) rows that train uncut within `max_length`; and the length report.

    TRL would cut what does not fit (padded or packed SFT rows, both DPO answers in its
    collator), not enforce the limit (padding-free SFT) or drop the pair silently (a DPO
    prompt that fills `max_length`), so such rows are left out here and counted by reason
    (`malt.lengths`): nothing is trained on a cut-off answer, nothing vanishes uncounted.
    """
    keep, tally = split_by_fit(tokenizer, kind, dataset.to_list(), max_length)
    kept = dataset if len(keep) == len(dataset) else dataset.select(keep)
    return kept, tally.to_dict()
