"""What a stage consumed, by content: settings, input files, models; and one rerun policy.

Every stage records its inputs as a flat mapping from a readable name ("the setting seed",
"label/sft_verifier.jsonl", "the verifier's final adapter") to a value or a content
hash. On a rerun the stage resumes when they are unchanged; when one changed it refuses in
one sentence naming it (`check_unchanged`), and `--restart` starts the stage over.

    >>> flatten({"train": {"beta": 0.2, "verifier": {"dpo": True}}}, "the setting ")
    {'the setting train.beta': 0.2, 'the setting train.verifier.dpo': True}
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from malt.errors import MaltError
from malt.io import sha256_file

# Files a local model folder is made of, besides config.json: its weights.
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf")
SETTING = "the setting "


# Files at least this big (model weights) are hashed once per process, per path, size, mtime
# and inode: eval and train meet the same base model several times. Smaller ones, always.
CACHE_FROM_BYTES = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    st = os.stat(path)
    if st.st_size < CACHE_FROM_BYTES:
        return sha256_file(path)
    return _cached_sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


@lru_cache(maxsize=1024)
def _cached_sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    return sha256_file(path)  # the stat fields only key the cache


def files_fingerprint(root: Path, files: Iterable[Path]) -> str:
    """"sha256:..." over each file's name (relative to `root`) and bytes, in name order."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        h.update(f"{f.relative_to(root).as_posix()}\0{file_sha256(f)}\n".encode())
    return f"sha256:{h.hexdigest()}"


def folder_fingerprint(folder: str | os.PathLike) -> str:
    """Every file under `folder` (hidden temporary files left out), by name and bytes."""
    root = Path(folder)
    files = [p for p in root.rglob("*") if p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return files_fingerprint(root, files)


def model_fingerprint(model: str) -> str:
    """A local model folder by its config.json and weights; a Hub id stays the id."""
    root = Path(model)
    if not root.is_dir():
        return model
    files = [root / "config.json"] if (root / "config.json").is_file() else []
    files += [p for pattern in WEIGHT_PATTERNS for p in root.glob(pattern)]
    return files_fingerprint(root, files)


def spec_inputs(specs: Mapping[str, Any], qualifier: str = "") -> dict[str, str]:
    """What roles run, by content, as consumed inputs: "the verifier's <qualifier>model" and,
    where it has one, "... adapter" (`specs`: role -> ModelSpec)."""
    out: dict[str, str] = {}
    for role, spec in specs.items():
        fp = spec_fingerprint(spec.model, spec.adapter)
        out[f"the {role}'s {qualifier}model"] = fp["model"]
        if fp["adapter"] is not None:
            out[f"the {role}'s {qualifier}adapter"] = fp["adapter"]
    return out


def spec_fingerprint(model: str, adapter: str | None) -> dict[str, str | None]:
    """What a role runs, by content: the model's fingerprint and the adapter folder's."""
    return {"model": model_fingerprint(model),
            "adapter": folder_fingerprint(adapter) if adapter is not None else None}


def in_run(path: str | os.PathLike, run_dir: str | os.PathLike) -> str:
    """`path` relative to the run dir when it lies inside it, else as given.

    >>> in_run("/r/run/label/sft_generator.jsonl", "/r/run")
    'label/sft_generator.jsonl'
    >>> in_run("/models/base", "/r/run")
    '/models/base'
    """
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(run_dir)).as_posix()
    except ValueError:
        return str(path)


def input_files(paths: Iterable[Path], run_dir: str | os.PathLike) -> dict[str, str | None]:
    """{file named relative to the run dir: sha256, or None when it does not exist}."""
    return {in_run(p, run_dir): file_sha256(p) if p.is_file() else None for p in paths}


def pick(config: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The dotted `keys` of a nested config dict (a missing one is None).

    >>> pick({"a": {"b": 1}, "c": 2}, ["a.b", "a.x"])
    {'a.b': 1, 'a.x': None}
    """
    out = {}
    for key in keys:
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        out[key] = node
    return out


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as {dotted name: leaf value}, the names prefixed with `prefix`."""
    if not isinstance(value, Mapping) or not value:
        return {prefix.rstrip("."): value}
    out: dict[str, Any] = {}
    for key, sub in value.items():
        out.update(flatten(sub, f"{prefix}{key}."))
    return {k.rstrip("."): v for k, v in out.items()}


def config_inputs(config: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The named settings of a config dict as consumed inputs ("the setting seed": 0, ...)."""
    out: dict[str, Any] = {}
    for key, value in pick(config, keys).items():
        out.update(flatten(value, f"{SETTING}{key}."))
    return out


def first_change(recorded: Mapping[str, Any], now: Mapping[str, Any],
                 common_only: bool = False) -> str | None:
    """The name of the first input whose value differs (None: all the same).

    >>> first_change({"a": 1, "b": 2}, {"a": 1, "b": 3})
    'b'
    >>> first_change({"a": 1}, {"a": 1, "new": 0}, common_only=True) is None
    True
    """
    names = [k for k in now if k in recorded] if common_only else [*recorded, *(
        k for k in now if k not in recorded)]
    for name in names:
        if recorded.get(name, _MISSING) != now.get(name, _MISSING):
            return name
    return None


_MISSING = object()


def check_unchanged(recorded: Any, now: Mapping[str, Any], where: Path, since: str,
                    restart: str, common_only: bool = False) -> None:
    """Refuse in one sentence when an input differs from what `where` recorded.

    `since` says what the record is of ("this run was started"), `restart` what --restart
    does ("delete its trees and start over").
    """
    if not isinstance(recorded, Mapping):
        raise MaltError(f"{where}: no record of the inputs {since} with; pass --restart to "
                        f"{restart}")
    name = first_change(recorded, now, common_only)
    if name is not None:
        raise MaltError(f"{where}: {name} changed since {since}; rerun with the same inputs "
                        f"to resume, or pass --restart to {restart}")
