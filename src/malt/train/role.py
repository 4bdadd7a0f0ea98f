"""One role end to end: SFT on its positives, then DPO on its pairs, then the final policy.

A role trains in `train/<role>.partial/` and replaces `train/<role>/` only once complete, so
a failed or interrupted run leaves the previous result as it was. Inside, phase results are
published as folders (`sft/`, `final/`, optional `merged/`) and `metrics.json` is rewritten
after every phase, so a rerun skips finished phases and picks an interrupted one up from its
last trainer checkpoint. `metrics.json` records what the role was trained on (settings, role
data and base model, by content): a finished role whose inputs are unchanged is kept, one
whose inputs changed is refused in one sentence, and `restart` trains it again.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from malt.backends.base import ModelSpec
from malt.config import RunConfig, to_dict
from malt.errors import MaltError
from malt.fingerprint import (
    check_unchanged,
    config_inputs,
    folder_fingerprint,
    input_files,
    model_fingerprint,
)
from malt.io import write_json
from malt.train import checkpoints
from malt.train.data import dataset_path, load_dataset
from malt.train.dpo import run_dpo
from malt.train.progress import PhaseProgress
from malt.train.settings import process_state
from malt.train.sft import Phase, run_sft

log = logging.getLogger("malt.train")

FINISHED = ("trained", "resumed")
NO_PAIRS = ("no preference pairs (e.g. every sibling had the same label); "
            "the role keeps its SFT result")
# train.* settings that do not change the trained weights (logging, checkpoint cadence).
# Settings that do not change the weights (`start_from` counts by its adapter's content).
NEUTRAL = ("report_to", "logging_steps", "save_steps", "save_total_limit", "start_from")
RETRAIN = "retrain it (the current result stays until the new one is complete)"


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
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def phases(cfg: RunConfig, role: str) -> tuple[str, ...]:
    """The phases model slot `role` trains ("sft", "dpo"), as configured; DPO only when the
    chain builds preference pairs for a role of the slot (`pairs`; not the generator's)."""
    from malt.runspec import chain_of

    rc = cfg.train.role(role)
    pairs = any(r.pairs for r in chain_of(cfg).using(role))
    return tuple(kind for kind, on in (("sft", rc.sft), ("dpo", rc.dpo and pairs)) if on)


def role_inputs(cfg: RunConfig, role: str) -> dict[str, Any]:
    """What `role`'s weights depend on: settings, its role data files, its base model."""
    config = to_dict(cfg)
    train = {k: v for k, v in config["train"].items()
             if k not in NEUTRAL and (k == role or not isinstance(v, dict))}
    keys = ("seed", "data.format", "models.trust_remote_code", "models.revision")
    files = [dataset_path(cfg.stage_dir("label"), kind, role, cfg.data.format)
             for kind in phases(cfg, role)]
    start = start_adapter(cfg, role)
    return {**config_inputs({"train": train}, ["train"]), **config_inputs(config, keys),
            **input_files(files, cfg.run_dir),
            "the base model": model_fingerprint(cfg.models.for_role(role)),
            **({"the adapter SFT starts from": folder_fingerprint(start)} if start else {})}


def start_adapter(cfg: RunConfig, role: str) -> Path | None:
    """The final adapter of `train.start_from`'s run for this slot, or None."""
    if cfg.train.start_from is None:
        return None
    if cfg.train.full_finetune:
        raise MaltError("train.start_from continues LoRA adapters; it does not combine with "
                        "train.full_finetune")
    from malt.artifacts import FINAL, from_stored, models_path, read_models

    path = models_path(cfg.train.start_from)
    entry = read_models(path).get(role, {}).get(FINAL)
    if entry is None:
        raise MaltError(f"{path}: {role}.final is missing (train.start_from)")
    adapter = from_stored(entry, cfg.train.start_from).adapter
    return Path(adapter) if adapter else None


def train_role(cfg: RunConfig, role: str, *, restart: bool = False,
               callbacks: list | None = None, progress: bool = True) -> RoleResult:
    """`role`'s finished result in `<run_dir>/train/<role>/`: kept, or (re)trained."""
    state = process_state()  # under `accelerate launch` only the main process writes files
    role_dir = cfg.stage_dir("train") / role
    work = role_dir.with_name(f"{role}.partial")
    if state.is_main_process:
        _recover(role_dir)
    state.wait_for_everyone()
    inputs = role_inputs(cfg, role)
    previous, partial = read_metrics(role_dir / "metrics.json"), read_metrics(work / "metrics.json")
    resumable = not restart and partial.get("inputs") == inputs
    if not resumable and not restart and previous.get("complete"):
        check_unchanged(previous.get("inputs"), inputs, role_dir / "metrics.json",
                        f"the {role} was trained", RETRAIN)
        return result_of(cfg, role, role_dir, _as_resumed(previous))
    if not resumable and not restart and partial.get("inputs") is not None:
        check_unchanged(partial["inputs"], inputs, work / "metrics.json",
                        f"this unfinished training of the {role} started", RETRAIN)
    state.wait_for_everyone()  # every process decided on the same files before any changes
    if state.is_main_process and not resumable:  # nothing in it may be reused
        shutil.rmtree(work, ignore_errors=True)
    state.wait_for_everyone()
    metrics = _train_phases(cfg, role, work, inputs, callbacks, progress)
    if state.is_main_process:
        _replace(work, role_dir)
    state.wait_for_everyone()
    return result_of(cfg, role, role_dir, metrics)


def _as_resumed(metrics: dict[str, Any]) -> dict[str, Any]:
    """A kept result's metrics, its finished phases marked "resumed" (as the summary shows)."""
    out = dict(metrics)
    for kind in ("sft", "dpo"):
        if isinstance(out.get(kind), dict) and out[kind].get("status") in FINISHED:
            out[kind] = {**out[kind], "status": "resumed"}
    return out


def _train_phases(cfg: RunConfig, role: str, work: Path, inputs: dict[str, Any],
                  callbacks: list | None, progress: bool) -> dict[str, Any]:
    """SFT, DPO, the final policy (and merge) in `work`, resuming what is finished there."""
    state = process_state()
    is_main = state.is_main_process
    base = cfg.models.for_role(role)
    rc, tc = cfg.train.role(role), cfg.train
    previous = read_metrics(work / "metrics.json")
    state.wait_for_everyone()  # read by all before the main process rewrites it below
    metrics: dict[str, Any] = {"role": role, "base_model": base, "complete": False,
                               "full_finetune": tc.full_finetune, "inputs": inputs}

    def phase(name: str, lr: float, epochs: float | None, dest: str) -> Phase:
        return Phase(model=base, dest=work / dest, run_dir=work / f"{name}_checkpoints",
                     learning_rate=lr, epochs=epochs, seed=cfg.seed,
                     trust_remote_code=cfg.models.trust_remote_code, revision=cfg.models.revision,
                     init_adapter=start_adapter(cfg, role) if name == "sft" else None)

    def save() -> None:
        if is_main:
            write_json(work / "metrics.json", metrics)

    def with_bar(name: str) -> list:
        return [*(callbacks or []), PhaseProgress(f"{role} {name}", enabled=progress)]

    save()  # the inputs first: an interrupted run is only resumed for the same ones
    sft = phase("sft", rc.sft_learning_rate, rc.sft_epochs, "sft")
    enabled = phases(cfg, role)
    metrics["sft"] = _sft(cfg, role, sft, previous, "sft" in enabled, with_bar("SFT"))
    save()
    sft_done = checkpoints.is_done(sft.dest) and metrics["sft"]["status"] in FINISHED
    sft_spec = spec_for(sft.dest, base, tc.full_finetune) if sft_done else ModelSpec(model=base)
    dpo = phase("dpo", rc.dpo_learning_rate, rc.dpo_epochs, "final")
    metrics["dpo"] = _dpo(cfg, role, dpo, previous, "dpo" in enabled,
                          sft.dest if sft_done else None, with_bar("DPO"))
    save()
    final_spec = _final(dpo.dest, sft.dest, sft_spec, metrics["dpo"], base, tc.full_finetune,
                        is_main)
    if tc.merge:
        _merge(cfg, final_spec, work / "merged", is_main)
    metrics["complete"] = True
    save()
    return metrics


def result_of(cfg: RunConfig, role: str, role_dir: Path, metrics: dict[str, Any]) -> RoleResult:
    """The ModelSpecs of a finished role folder (a phase that produced nothing: the base)."""
    base, full = cfg.models.for_role(role), cfg.train.full_finetune

    def spec(name: str) -> ModelSpec:
        folder = role_dir / name
        return spec_for(folder, base, full) if checkpoints.is_done(folder) else ModelSpec(base)

    sft_ok = metrics.get("sft", {}).get("status") in FINISHED
    merged = role_dir / "merged"
    return RoleResult(sft=spec("sft") if sft_ok else ModelSpec(base), final=spec("final"),
                      metrics=metrics,
                      merged=ModelSpec(str(merged.resolve())) if cfg.train.merge
                      and (merged / "config.json").is_file() else None)


def _replace(work: Path, role_dir: Path) -> None:
    """Put the finished `work` folder in place of `role_dir`; the old one goes only after."""
    old = role_dir.with_name(f"{role_dir.name}.replaced")
    shutil.rmtree(old, ignore_errors=True)
    if role_dir.exists():
        role_dir.rename(old)
    work.rename(role_dir)
    shutil.rmtree(old, ignore_errors=True)


def _recover(role_dir: Path) -> None:
    """Undo a replacement cut short between its two renames: the old result comes back."""
    old = role_dir.with_name(f"{role_dir.name}.replaced")
    if old.exists() and not role_dir.exists():
        old.rename(role_dir)
    shutil.rmtree(old, ignore_errors=True)


def _sft(cfg: RunConfig, role: str, phase: Phase, previous: dict, enabled: bool,
         callbacks: list | None) -> dict[str, Any]:
    """The SFT phase: kept when finished in `previous`, else trained (from its checkpoint)."""
    if not enabled:
        return {"status": "disabled"}
    done_before = previous.get("sft", {})
    if checkpoints.is_done(phase.dest) and done_before.get("status") in FINISHED:
        return {**done_before, "status": "resumed"}
    dataset = load_dataset(cfg.stage_dir("label"), "sft", role, cfg.data.format)
    if len(dataset) == 0:
        log.warning("%s: no SFT rows (no positive examples); the role keeps the base model", role)
        return {"status": "skipped", "reason": "no SFT rows; the role keeps the base model"}
    return run_sft(cfg.train, phase, dataset, resume=True, callbacks=callbacks)


def _dpo(cfg: RunConfig, role: str, phase: Phase, previous: dict, enabled: bool,
         sft: Path | None, callbacks: list | None) -> dict[str, Any]:
    """The DPO phase from the SFT result `sft`: kept when finished, else trained."""
    if not enabled:
        return {"status": "disabled"}
    done_before = previous.get("dpo", {})
    if checkpoints.is_done(phase.dest) and done_before.get("status") in FINISHED:
        return {**done_before, "status": "resumed"}
    dataset = load_dataset(cfg.stage_dir("label"), "dpo", role, cfg.data.format)
    if len(dataset) == 0:
        log.warning("%s: %s", role, NO_PAIRS)
        return {"status": "skipped", "reason": NO_PAIRS}
    return run_dpo(cfg.train, phase, dataset, sft, resume=True, callbacks=callbacks)


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
