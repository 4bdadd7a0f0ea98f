"""File I/O at the edges: JSONL and YAML with file:line errors, atomic writes, trees, manifests."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import orjson

from malt.errors import MaltError
from malt.records import Tree

_UMASK = os.umask(0)
os.umask(_UMASK)


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; a bad line names file:line."""
    path = Path(path)
    if not path.is_file():
        raise MaltError(f"{path}: no such file")
    for lineno, raw in raw_lines(path):
        try:
            yield lineno, json_object(raw)
        except MaltError as e:
            raise MaltError(f"{path}:{lineno}: {e}") from None


def raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of each non-blank line; bytes, so one bad byte costs one line."""
    with path.open("rb", buffering=1 << 20) as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.isspace():  # what strip() would leave empty (no copy of a long line)
                yield lineno, raw


# JSON may escape half a surrogate pair ("\ud800"): valid JSON, but no UTF-8 writer takes it.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def json_object(raw: bytes) -> dict[str, Any]:
    """One JSONL line as a dict; MaltError with the reason (bad UTF-8, JSON or Unicode)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        byte = raw[e.start]
        raise MaltError(f"not valid UTF-8 (byte 0x{byte:02x} at column {e.start + 1})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise MaltError(f"not valid JSON ({e.msg})") from None
    except RecursionError:
        raise MaltError("not valid JSON (nested too deeply to read)") from None
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        raise MaltError(f"not valid JSON ({str(e).split(';')[0]})") from None
    if not isinstance(obj, dict):
        raise MaltError(f"expected a JSON object, got {type(obj).__name__}")
    if _SURROGATE_ESCAPE.search(raw):
        try:
            dumps(obj).encode("utf-8")
        except UnicodeEncodeError as e:
            raise MaltError(f"not valid Unicode (a lone surrogate {e.object[e.start]!r})") from None
    return obj


def dumps(obj: Any) -> str:
    """One canonical JSON line (stable bytes for the same object)."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=False, separators=(",", ":"))


def jsonl_line(obj: Any, *, checked: bool = False) -> bytes:
    """`dumps(obj)` and a newline as UTF-8 bytes, the same bytes however they are made.

    orjson writes dicts with string keys, lists, strings, booleans, None, integers and floats
    from 1e-4 to 1e16 exactly as `dumps` does, three times faster, so such objects go through
    it; anything else (1e-05 it writes as 0.00001, a dataclass where `dumps` refuses one)
    through `dumps`. `checked=True`: the caller knows `obj` holds only those, so it is not
    looked through first (rows of messages from checked trees: strings only).
    """
    if _ORJSON_WRITES_ALIKE and (checked or _orjson_alike(obj)):
        try:
            return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
        except TypeError:  # a lone surrogate: let `dumps` and the encoder say what is wrong
            pass
    return (dumps(obj) + "\n").encode("utf-8")


def _orjson_alike(obj: Any) -> bool:
    """Whether orjson writes `obj` as `dumps` does (see `jsonl_line`)."""
    kind = type(obj)
    if kind is str or obj is None or kind is bool:
        return True
    if kind is int:
        return -(2**63) <= obj < 2**64
    if kind is float:  # `dumps` writes an exponent outside these, orjson another one
        return obj == 0.0 or 1e-4 <= abs(obj) < 1e16
    if kind is list:
        return all(map(_orjson_alike, obj))
    if kind is dict:
        return all(type(k) is str for k in obj) and all(map(_orjson_alike, obj.values()))
    return False


# What `jsonl_line` relies on, checked once against the installed orjson: should a release
# write any of these otherwise, every line goes through `dumps`.
_ORJSON_WRITES_ALIKE = all(orjson.dumps(x) == dumps(x).encode("utf-8") for x in (
    {"role": "user", "content": 'a "quoted" \\ back\tslash\n\x00\x1f\x7f é 中 \u2028 😀'},
    [0.0, -0.0, 1.0, 0.5, 1 / 3, 1e-4, 0.000123, 2 / 3 * 1e15, 9999999999999998.0],
    [None, True, False, 0, -(2**63), 2**64 - 1, "", []], {}))


# Errors that can only come from writing, wherever they are raised (a full disk, a quota).
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Write to a temp file beside `path` and rename it into place only on success.

    A failed write (full disk, read-only folder) is one sentence naming `path`; the old file
    stays as it was and no temporary file is left behind.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise MaltError(f"{path}: cannot write ({_reason(path.parent, e)})") from None
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            try:
                yield f
            except OSError as e:
                if e.errno in _WRITE_ERRNOS:
                    raise MaltError(f"{path}: cannot write ({e.strerror})") from None
                raise
            _finish(f, tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _finish(f: IO, tmp: str, path: Path) -> None:
    """Flush a temporary file to disk and rename it to `path`."""
    try:
        f.flush()
        os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts get ordinary permissions
        os.replace(tmp, path)
    except OSError as e:
        raise MaltError(f"{path}: cannot write ({e.strerror or e})") from None


def _reason(folder: Path, e: OSError) -> str:
    """Why a folder cannot be made or written in, naming a file that stands in its way."""
    for parent in (folder, *folder.parents):
        if parent.exists() and not parent.is_dir():
            return f"{parent} is a file, not a folder"
    return e.strerror or str(e)


def ensure_writable(folder: str | os.PathLike) -> Path:
    """Create `folder` if needed and check a file can be written in it; else one sentence.

    Stages call it first, so a read-only or misplaced run dir is reported before any work.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".malt-write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise MaltError(f"{folder}: cannot write in this folder ({_reason(folder, e)})") from None
    return folder


def os_error_sentence(e: OSError) -> str:
    """An OSError as one sentence naming its file ("path: No space left on device")."""
    where = e.filename if e.filename is not None else "a file"
    return f"{where}: {e.strerror or e}"


@contextmanager
def reading(source: str | os.PathLike) -> Iterator[None]:
    """Turn a file reader's own failure (Arrow, the OS) into one sentence naming `source`."""
    try:
        yield
    except OSError as e:
        raise MaltError(f"{source}: cannot read ({e.strerror or e})") from None
    except Exception as e:
        if not type(e).__module__.startswith("pyarrow"):
            raise
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MaltError(f"{source}: not a readable Parquet file ({first})") from None


def read_parquet_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of a Parquet file; a file that is not Parquet is one sentence naming it."""
    import pyarrow.parquet as pq

    with reading(path):
        return pq.read_table(path).to_pylist()


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> int:
    """Atomically write rows as JSONL; returns the number of rows."""
    n = 0
    with atomic_open(path) as f:
        for row in rows:
            f.write(dumps(row) + "\n")
            n += 1
    return n


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a missing or broken file is one clear error naming it."""
    path = Path(path)
    if not path.is_file():
        raise MaltError(f"{path}: not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise MaltError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


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


class DatasetWriter:
    """Streams rows to a `datasets`-loadable .jsonl or .parquet file, renamed into place
    on `close()` so a crash never leaves a half-written dataset under the final name."""

    def __init__(
        self,
        path: str | os.PathLike,
        fmt: str = "jsonl",
        columns: tuple[str, ...] = (),
        batch_rows: int = 2048,
    ):
        self.columns = columns  # message-list columns; give an empty Parquet file its schema
        self.path = Path(path).with_suffix(f".{fmt}")
        self.fmt = fmt
        self.rows = 0
        self._batch: list[dict[str, Any]] = []
        self._batch_rows = batch_rows
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        with self._naming_errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._tmp.open("wb", buffering=1 << 20) if fmt == "jsonl" else None
        self._parquet = None

    def write(self, row: dict[str, Any], *, checked: bool = False) -> None:
        """Add one row; `checked` as in `jsonl_line`."""
        self.rows += 1
        try:  # not `_naming_errors`: a context manager per row costs more than the row
            if self._file is not None:
                self._file.write(jsonl_line(row, checked=checked))
                return
            self._batch.append(row)
            if len(self._batch) >= self._batch_rows:
                self._flush_parquet()
        except OSError as e:
            raise self._write_error(e) from None

    @contextmanager
    def _naming_errors(self) -> Iterator[None]:
        """A failed write (a full disk) is one sentence naming the dataset file."""
        try:
            yield
        except OSError as e:
            raise self._write_error(e) from None

    def _write_error(self, e: OSError) -> MaltError:
        return MaltError(f"{self.path}: cannot write ({e.strerror or e})")

    def _flush_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._batch:
            return
        table = pa.Table.from_pylist(self._batch)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._tmp, table.schema)
        self._parquet.write_table(table.cast(self._parquet.schema))
        self._batch = []

    def close(self) -> Path:
        """Finish the file and move it into place; returns its final path."""
        with self._naming_errors():
            return self._close()

    def _close(self) -> Path:
        if self._file is not None:
            self._file.close()
        else:
            self._flush_parquet()
            if self._parquet is None:  # no rows: an empty table that still has its columns
                import pyarrow as pa
                import pyarrow.parquet as pq

                message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
                schema = pa.schema([(c, message) for c in self.columns])
                pq.write_table(schema.empty_table(), self._tmp)
            else:
                self._parquet.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file (used when the stage fails before finishing)."""
        if self._file is not None:
            self._file.close()
        if self._parquet is not None:
            self._parquet.close()
        self._tmp.unlink(missing_ok=True)


def iter_tree_lines(path: str | os.PathLike) -> Iterator[Tree | MaltError]:
    """Like `read_trees`, but yields a MaltError naming file:line for a bad line and goes on."""
    for file in tree_files(path):
        for lineno, raw in raw_lines(file):
            yield tree_or_error(file, lineno, raw)


def tree_or_error(file: Path, lineno: int, raw: bytes) -> Tree | MaltError:
    """The tree on line `lineno` of `file`, or a MaltError naming file:line and the reason."""
    try:
        return tree_from_line(raw)
    except MaltError as e:
        return MaltError(f"{file}:{lineno}: {e}")


def tree_from_line(raw: bytes) -> Tree:
    """`Tree.from_dict(json_object(raw))`, the same tree or error, faster.

    orjson reads a well-formed line in a third less time than `json`; whatever it refuses or
    may read otherwise goes the slow way, so the tree or the error is always the same: a line
    it cannot read or that makes no tree (the error comes from the slow way), and a tree
    holding a float past the 64-bit integers (orjson reads such an integer as a float).
    """
    tree = _fast_tree(raw)
    return tree if tree is not None else Tree.from_dict(json_object(raw))


def _fast_tree(raw: bytes) -> Tree | None:
    try:
        row = orjson.loads(raw)
        if type(row) is dict:
            tree = Tree.from_dict(row)
            if not _holds_huge_float(tree):
                return tree
    except Exception:  # noqa: BLE001 - the slow way raises it again, or its own error
        pass
    return None


def tree_outputs(raw: bytes) -> tuple[Any, list[tuple[Any, Any]]] | None:
    """(gold answer, (role, completion) of each node) of a tree line, read quickly and
    unchecked (`tree_from_line` checks); None where they cannot be read."""
    try:
        row = orjson.loads(raw)
        return row["problem"]["answer"], [(n["role"], n["completion"]) for n in row["nodes"]]
    except Exception:  # noqa: BLE001 - a malformed line: `tree_from_line` says what is wrong
        return None


_INT64 = (-(2**63), 2**64)  # the integers orjson reads as integers


_SCALARS = frozenset((str, int, bool, type(None)))  # what orjson and `json` read alike


def _holds_huge_float(tree: Tree) -> bool:
    """Whether a field the tree checks no type of holds a float outside orjson's integers."""
    scalars = _SCALARS
    for n in tree.nodes:
        if not (type(n.answer) in scalars and type(n.reward) in scalars
                and type(n.value) in scalars and type(n.label) in scalars
                and type(n.num_tokens) in scalars and type(n.finish_reason) in scalars
                and type(n.prompt_tokens) in scalars) and any(map(_nested_huge_float, (
                    n.answer, n.reward, n.value, n.label, n.num_tokens, n.finish_reason,
                    n.prompt_tokens))):
            return True
    return _nested_huge_float(tree.problem.meta)


def _nested_huge_float(obj: Any) -> bool:
    if type(obj) is float:
        return not _INT64[0] <= obj < _INT64[1]
    if type(obj) is dict:
        return any(_nested_huge_float(v) for v in obj.values())
    if type(obj) is list:
        return any(_nested_huge_float(v) for v in obj)
    return False
