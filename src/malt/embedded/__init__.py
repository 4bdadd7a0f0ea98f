"""The embedded world: a tiny pretrained base model for the synthetic `arith` task.

`base_model_path()` is the folder every backend loads (`models.base`): the base shipped in
the package, or, when that is missing, one built once into a cache folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets" / "base"
REPORT = "build_report.json"  # written last by the builder: its presence marks a whole build


def cache_dir() -> Path:
    """Where a locally built base goes: `$MALT_CACHE` or `~/.cache/malt`, then embedded-base."""
    root = os.environ.get("MALT_CACHE") or Path.home() / ".cache" / "malt"
    return Path(root) / "embedded-base"


def is_complete(path: Path) -> bool:
    """Whether `path` holds a finished build (model, tokenizer and build report)."""
    return all((path / f).is_file() for f in ("config.json", "model.safetensors",
                                               "tokenizer.json", REPORT))


def base_model_path(build_if_missing: bool = True, seed: int = 0) -> Path:
    """The tiny base model folder: shipped, else cached, else built now (minutes)."""
    if is_complete(ASSETS):
        return ASSETS
    target = cache_dir()
    if is_complete(target) or not build_if_missing:
        return target
    from malt.embedded.build import BuildConfig, build

    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target, then move it in whole, so a killed build leaves no half model.
    tmp = Path(tempfile.mkdtemp(prefix=".embedded-base-", dir=target.parent))
    try:
        build(tmp, BuildConfig(seed=seed))
        if not is_complete(target):
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


__all__ = ["ASSETS", "base_model_path", "cache_dir", "is_complete"]
