"""`malt train`: per-role LoRA SFT then DPO (TRL + PEFT) on the label stage's role datasets.

Writes `<run_dir>/train/<role>/{sft,final}/` (PEFT adapter folders, or full models with
`train.full_finetune`), `<role>/metrics.json`, and `<run_dir>/train/models.json` mapping each
role to the ModelSpec dicts the backends load. Works unchanged under `accelerate launch`.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from malt.config import RunConfig, save_config
from malt.errors import MaltError
from malt.io import manifest, write_json
from malt.records import ROLES

ALL = "all"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The stage's own flags."""
    parser.add_argument("--role", choices=[*ROLES, ALL], default=ALL,
                        help="which role to train (default: all three, in order)")
    parser.add_argument("--resume", action="store_true",
                        help="skip finished phases and continue from the last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def main(cfg: RunConfig, args: argparse.Namespace) -> dict[str, Any] | None:
    """CLI entry: train the chosen role(s) and return the summary."""
    from malt.train.settings import process_state

    roles = ROLES if args.role == ALL else (args.role,)
    summary = run(cfg, roles=roles, resume=args.resume, progress=not args.no_progress)
    return summary if process_state().is_main_process else None  # one summary per launch


def run(cfg: RunConfig, roles: tuple[str, ...] | list[str] = ROLES, *, resume: bool = False,
        callbacks: list | None = None, progress: bool = True) -> dict[str, Any]:
    """Train `roles` in order; returns {role: metrics} plus where models.json was written.

    Each phase shows one progress bar ("verifier DPO": steps and loss) unless `progress` is
    False; TRL's own log lines and the libraries' bars stay off either way.
    """
    from malt.train.progress import quiet_libraries
    from malt.train.role import train_role
    from malt.train.settings import process_state

    label_dir = cfg.stage_dir("label")
    if not label_dir.is_dir():
        raise MaltError(f"{label_dir}: no label stage output (run `malt label` first)")
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise MaltError(f"--role: unknown role {unknown[0]!r} (known: {', '.join(ROLES)})")
    out = cfg.stage_dir("train")
    state = process_state()
    summary: dict[str, Any] = {}
    for role in roles:
        with quiet_libraries():
            result = train_role(cfg, role, resume=resume, callbacks=callbacks, progress=progress)
        summary[role] = result.metrics
        if state.is_main_process:
            update_models(out / "models.json", role, result)
    if state.is_main_process:
        save_config(cfg, out / "config.yaml")
        write_json(out / "manifest.json", manifest({"stage": "train", "roles": list(roles)}))
    state.wait_for_everyone()
    return {"models": str(out / "models.json"), "roles": summary}


def update_models(path, role: str, result) -> None:
    """Record `role`'s ModelSpecs in models.json, keeping the other roles' entries."""
    from malt.train.role import read_metrics

    models = read_metrics(path)
    entry = {"sft": dataclasses.asdict(result.sft), "final": dataclasses.asdict(result.final)}
    if result.merged is not None:
        entry["merged"] = dataclasses.asdict(result.merged)
    models[role] = entry
    write_json(path, models)
