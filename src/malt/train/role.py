"""One role end to end: SFT on its positives, then DPO on its pairs, then the final policy.

Phase results are published as folders (`sft/`, `final/`, optional `merged/`) and the role's
`metrics.json` is rewritten after every phase, so `--resume` skips finished phases and picks
an interrupted one up from its last trainer checkpoint.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from malt.backends.base import ModelSpec
from malt.config import RunConfig
from malt.io import write_json
from malt.train import checkpoints
from malt.train.data import load_dataset
from malt.train.dpo import run_dpo
from malt.train.progress import PhaseProgress
from malt.train.settings import process_state
from malt.train.sft import Phase, run_sft

log = logging.getLogger("malt.train")

FINISHED = ("trained", "resumed")
NO_PAIRS = ("no preference pairs (e.g. every sibling had the same label); "
            "the role keeps its SFT result")


@dataclass(frozen=True)
class RoleResult:
    """What a role ended with: the ModelSpec after SFT, the final one, and its metrics."""

    sft: ModelSpec
    final: ModelSpec
    metrics: dict[str, Any]
    merged: ModelSpec | None = None


def spec_for(folder: Path, base: str, full: bool) -> ModelSpec:
    """The ModelSpec a backend loads for a published phase folder."""
    folder = folder.resolve()
    return ModelSpec(model=str(folder)) if full else ModelSpec(model=base, adapter=str(folder))


def read_metrics(path: Path) -> dict[str, Any]:
    """A role's metrics file from an earlier (possibly interrupted) run, or {}."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def train_role(cfg: RunConfig, role: str, *, resume: bool = False,
               callbacks: list | None = None, progress: bool = True) -> RoleResult:
    """Train `role` from the label stage's datasets into `<run_dir>/train/<role>/`."""
    state = process_state()  # under `accelerate launch` only the main process writes files
    is_main = state.is_main_process
    base = cfg.models.for_role(role)
    rc, tc = cfg.train.role(role), cfg.train
    role_dir = cfg.stage_dir("train") / role
    previous = read_metrics(role_dir / "metrics.json") if resume else {}
    if is_main and not resume:  # without --resume a role is trained from scratch
        for name in ("sft", "final", "merged"):
            shutil.rmtree(role_dir / name, ignore_errors=True)
        (role_dir / "metrics.json").unlink(missing_ok=True)
    state.wait_for_everyone()
    metrics: dict[str, Any] = {"role": role, "base_model": base, "complete": False,
                               "full_finetune": tc.full_finetune}

    def phase(name: str, lr: float, epochs: float | None, dest: str) -> Phase:
        return Phase(model=base, dest=role_dir / dest, run_dir=role_dir / f"{name}_checkpoints",
                     learning_rate=lr, epochs=epochs, seed=cfg.seed,
                     trust_remote_code=cfg.models.trust_remote_code, revision=cfg.models.revision)

    def save() -> None:
        if is_main:
            write_json(role_dir / "metrics.json", metrics)

    def with_bar(name: str) -> list:
        return [*(callbacks or []), PhaseProgress(f"{role} {name}", enabled=progress)]

    sft = phase("sft", rc.sft_learning_rate, rc.sft_epochs, "sft")
    metrics["sft"] = _sft(cfg, role, sft, previous, rc.sft, resume, with_bar("SFT"))
    save()
    sft_done = checkpoints.is_done(sft.dest) and metrics["sft"]["status"] in FINISHED
    sft_spec = spec_for(sft.dest, base, tc.full_finetune) if sft_done else ModelSpec(model=base)

    dpo = phase("dpo", rc.dpo_learning_rate, rc.dpo_epochs, "final")
    metrics["dpo"] = _dpo(cfg, role, dpo, previous, rc.dpo, sft.dest if sft_done else None,
                          resume, with_bar("DPO"))
    save()
    final_spec = _final(dpo.dest, sft.dest, sft_spec, metrics["dpo"], base, tc.full_finetune,
                        is_main)
    merged = _merge(cfg, final_spec, role_dir / "merged", is_main) if tc.merge else None
    metrics["complete"] = True
    save()
    state.wait_for_everyone()
    return RoleResult(sft=sft_spec, final=final_spec, metrics=metrics, merged=merged)


def _sft(cfg: RunConfig, role: str, phase: Phase, previous: dict, enabled: bool, resume: bool,
         callbacks: list | None) -> dict[str, Any]:
    if not enabled:
        return {"status": "disabled"}
    done_before = previous.get("sft", {})
    if resume and checkpoints.is_done(phase.dest) and done_before.get("status") in FINISHED:
        return {**done_before, "status": "resumed"}
    dataset = load_dataset(cfg.stage_dir("label"), "sft", role, cfg.data.format)
    if len(dataset) == 0:
        log.warning("%s: no SFT rows (no positive examples); the role keeps the base model", role)
        return {"status": "skipped", "reason": "no SFT rows; the role keeps the base model"}
    return run_sft(cfg.train, phase, dataset, resume=resume, callbacks=callbacks)


def _dpo(cfg: RunConfig, role: str, phase: Phase, previous: dict, enabled: bool,
         sft: Path | None, resume: bool, callbacks: list | None) -> dict[str, Any]:
    if not enabled:
        return {"status": "disabled"}
    done_before = previous.get("dpo", {})
    if resume and checkpoints.is_done(phase.dest) and done_before.get("status") in FINISHED:
        return {**done_before, "status": "resumed"}
    dataset = load_dataset(cfg.stage_dir("label"), "dpo", role, cfg.data.format)
    if len(dataset) == 0:
        log.warning("%s: %s", role, NO_PAIRS)
        return {"status": "skipped", "reason": NO_PAIRS}
    return run_dpo(cfg.train, phase, dataset, sft, resume=resume, callbacks=callbacks)


def _final(final: Path, sft: Path, sft_spec: ModelSpec, dpo: dict, base: str, full: bool,
           is_main: bool) -> ModelSpec:
    """The role's final policy: the DPO result, else a copy of the SFT result, else the base."""
    if dpo["status"] in FINISHED:
        return spec_for(final, base, full)
    if sft_spec.adapter is None and sft_spec.model == base:
        return sft_spec
    if is_main:
        tmp = final.with_name(".final.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(sft, tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    return spec_for(final, base, full)


def _merge(cfg: RunConfig, spec: ModelSpec, dest: Path, is_main: bool) -> ModelSpec | None:
    """Merge the final adapter into a copy of the base weights (`train.merge`)."""
    if spec.adapter is None:
        return None
    if is_main:
        from malt.train import lora

        kwargs = {"trust_remote_code": cfg.models.trust_remote_code,
                  "revision": cfg.models.revision}
        model = lora.load_adapter(lora.load_model(spec.model, bf16=False, **kwargs), spec.adapter,
                                  trainable=False)
        tmp = dest.with_name(".merged.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.merge_and_unload().save_pretrained(str(tmp), safe_serialization=True)
        lora.load_tokenizer(spec.model, **kwargs).save_pretrained(str(tmp))
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    return ModelSpec(model=str(dest.resolve()))
