"""Backend registry: `build_backend(cfg, models)` returns a `Backend` for the run.

Each backend module defines `create(cfg, models, trust_remote_code, revision)` and keeps its
heavy imports (torch/transformers, vllm, openai) inside itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from malt.backends.base import Backend, Completion, ModelSpec, SamplingParams, derive_seed
from malt.config import BackendConfig
from malt.errors import MaltError

BACKENDS: dict[str, str] = {
    "hf": "malt.backends.hf",
    "vllm": "malt.backends.vllm",
    "openai": "malt.backends.openai",
}


def build_backend(
    cfg: BackendConfig,
    models: Mapping[str, ModelSpec],
    *,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> Backend:
    """The backend named by `cfg.name`, serving `models[role]` for each role."""
    if cfg.name not in BACKENDS:
        known = ", ".join(BACKENDS)
        raise MaltError(f"backend.name: unknown backend {cfg.name!r} (known: {known})")
    module = importlib.import_module(BACKENDS[cfg.name])
    return module.create(cfg, dict(models), trust_remote_code=trust_remote_code, revision=revision)


__all__ = [
    "BACKENDS", "Backend", "Completion", "ModelSpec", "SamplingParams", "build_backend",
    "derive_seed",
]
