"""A run's models, in one place: which model a model slot runs from which source.

A source is `base` (the config's `models.<slot>`, or `models.base`), `sft` (the slot's SFT
adapter: the STaR baselines) or `final` (SFT then DPO: MALT). `resolve` answers "slot s from
source x" for generate, train and eval alike. Trained models are indexed in
`<run_dir>/train/models.json`, keyed by model slot (`malt.chain`):

    {"verifier": {"sft":   {"model": "/models/base", "adapter": "train/verifier/sft"},
                  "final": {"model": "/models/base", "adapter": "train/verifier/final"}}, ...}

`malt train` writes it, `malt eval` reads it. Paths inside the run dir are stored relative
to the run dir and resolved against it on read, so a copied or moved run dir uses its own
adapters; files from before, with absolute paths, are read as they are. Reading checks every
entry, so a broken file is one sentence naming it before any work starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from malt.backends.base import ModelSpec
from malt.errors import MaltError
from malt.fingerprint import in_run
from malt.io import read_json, write_json

FILE = "models.json"
BASE, SFT, FINAL = "base", "sft", "final"
SOURCES = (BASE, SFT, FINAL)


def models_path(run_dir: str | os.PathLike) -> Path:
    """Where `malt train` records the trained models of a run."""
    return Path(run_dir) / "train" / FILE


def read_models(path: Path, missing_ok: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """The file's entries as stored, each checked; a missing file is {} when `missing_ok`."""
    if not path.is_file() and missing_ok:
        return {}
    if not path.is_file():
        raise MaltError(f"{path}: not found; run `malt train` first or drop the star_*/malt* "
                        "methods from eval.methods")
    data = read_json(path)
    if not isinstance(data, dict):
        raise MaltError(f"{path}: expected a mapping of role -> specs")
    for role, entry in data.items():
        if not isinstance(entry, dict):
            raise MaltError(f"{path}: {role} needs a mapping of stage -> spec")
        for stage, spec in entry.items():
            check_entry(spec, f"{path}: {role}.{stage}")
    return data


def check_entry(spec: Any, where: str) -> None:
    """One stored spec: {"model": <str>, "adapter": <str or null>}."""
    if not isinstance(spec, dict) or not isinstance(spec.get("model"), str):
        raise MaltError(f"{where} needs a mapping with a 'model' string")
    adapter = spec.get("adapter")
    if adapter is not None and not isinstance(adapter, str):
        raise MaltError(f"{where}.adapter must be a path string or null")


def resolve(cfg: Any, slot: str, source: str, trained: dict[str, Any] | None = None
            ) -> ModelSpec:
    """The model `slot` runs from `source`, checked (an adapter folder must hold a PEFT
    adapter); `trained` is models.json's content when the caller has read it already."""
    if source == BASE:
        return ModelSpec(model=cfg.models.for_role(slot))
    if source not in SOURCES:
        raise MaltError(f"unknown model source {source!r} (known: {', '.join(SOURCES)})")
    path = models_path(cfg.run_dir)
    trained = read_models(path) if trained is None else trained
    stored_spec = trained.get(slot, {}).get(source)
    if stored_spec is None:
        raise MaltError(f"{path}: {slot}.{source} is missing (run `malt train --role {slot}`)")
    spec = from_stored(stored_spec, cfg.run_dir)
    check_spec(spec, f"{path} ({slot}.{source})")
    return spec


def check_spec(spec: ModelSpec, where: str) -> None:
    """Fail early on an adapter folder that is missing or holds no adapter config."""
    if spec.adapter is not None and not (Path(spec.adapter) / "adapter_config.json").is_file():
        raise MaltError(f"{where}: adapter {spec.adapter} is not a readable PEFT adapter folder")


def from_stored(spec: dict[str, Any], run_dir: str | os.PathLike) -> ModelSpec:
    """A stored spec as the ModelSpec a backend loads: relative paths against the run dir.

    An adapter is always a path; a model is a path only when it names something in the run
    dir (otherwise it stays a Hub id or a path as the user gave it).
    """
    run = Path(run_dir)
    adapter = spec.get("adapter")
    if adapter is not None and not os.path.isabs(adapter):
        adapter = str((run / adapter).resolve())
    model = spec["model"]
    if not os.path.isabs(model) and (run / model).exists():
        model = str((run / model).resolve())
    return ModelSpec(model=model, adapter=adapter)


def stored(spec: ModelSpec, run_dir: str | os.PathLike) -> dict[str, Any]:
    """A ModelSpec as models.json keeps it: paths inside the run dir made relative to it."""
    model = in_run(spec.model, run_dir) if Path(spec.model).exists() else spec.model
    adapter = in_run(spec.adapter, run_dir) if spec.adapter is not None else None
    return {"model": model, "adapter": adapter}


def update_role(path: Path, run_dir: str | os.PathLike, role: str,
                specs: dict[str, ModelSpec]) -> None:
    """Record `role`'s specs (by stage), keeping the other roles' entries."""
    models = read_models(path, missing_ok=True)
    models[role] = {stage: stored(spec, run_dir) for stage, spec in specs.items()}
    write_json(path, models)
