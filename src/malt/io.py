"""File I/O at the edges: JSONL with file:line errors, atomic writes, trees, manifests."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from malt.errors import MaltError
from malt.records import Tree


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; bad JSON names file:line."""
    path = Path(path)
    if not path.is_file():
        raise MaltError(f"{path}: no such file")
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise MaltError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise MaltError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def dumps(obj: Any) -> str:
    """One canonical JSON line (stable bytes for the same object)."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=False, separators=(",", ":"))


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Write to a temp file beside `path` and rename it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> int:
    """Atomically write rows as JSONL; returns the number of rows."""
    n = 0
    with atomic_open(path) as f:
        for row in rows:
            f.write(dumps(row) + "\n")
            n += 1
    return n


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def tree_files(path: str | os.PathLike) -> list[Path]:
    """The tree shards of a generate folder (sorted), or the single file given."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("trees-*.jsonl"))
        if not files:
            raise MaltError(f"{path}: no trees-*.jsonl shards in this folder")
        return files
    if not path.is_file():
        raise MaltError(f"{path}: no such file or folder")
    return [path]


def read_trees(path: str | os.PathLike) -> Iterator[Tree]:
    """Stream trees from a shard, a folder of shards; errors name file:line and the reason."""
    for file in tree_files(path):
        for lineno, row in read_jsonl(file):
            try:
                yield Tree.from_dict(row)
            except MaltError as e:
                raise MaltError(f"{file}:{lineno}: {e}") from None


def write_trees(path: str | os.PathLike, trees: Iterable[Tree]) -> int:
    """Atomically write one shard of trees."""
    return write_jsonl(path, (t.to_dict() for t in trees))


def sha256_file(path: str | os.PathLike, limit_bytes: int | None = None) -> str:
    """Hex sha256 of a file (or of its first `limit_bytes`, for cheap hashes of big files)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        remaining = limit_bytes
        while chunk := f.read(1 << 20 if remaining is None else min(1 << 20, remaining)):
            h.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
                if remaining <= 0:
                    break
    return h.hexdigest()


def git_commit() -> str | None:
    """The malt source tree's git commit, when it is a checkout; None otherwise."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


def manifest(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Provenance for an artifact: versions, platform, git commit, time, plus `extra`."""
    import malt

    data: dict[str, Any] = {
        "malt": malt.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {
            m: _version(m)
            for m in ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "math-verify")
        },
        "git_commit": git_commit(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    data.update(extra or {})
    return data
