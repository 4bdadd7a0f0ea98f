"""`malt train`: per-role LoRA SFT then DPO (TRL + PEFT) on the label stage's role datasets.

Writes `<run_dir>/train/<role>/{sft,final}/` (PEFT adapter folders, or full models with
`train.full_finetune`), `<role>/metrics.json`, and `<run_dir>/train/models.json` mapping each
role to the ModelSpec dicts the backends load (paths relative to the run dir). Works
unchanged under `accelerate launch`.

Before any role trains, every requested role's data is read and checked and models.json is
read, so a malformed row or a broken file stops the run with one sentence and nothing
changed. A rerun keeps each finished role whose inputs (settings, role data, base model) are
unchanged and continues an interrupted one; a role whose inputs changed is refused unless
`--restart`. A role's new result replaces the old one only once it is complete. Rows longer
than `train.max_length` are left out, never cut: each phase's metrics count them by reason
and carry the token lengths (`lengths`: p50 / p95 / max, see `malt.lengths`).
"""

from __future__ import annotations

import argparse
from typing import Any

from malt.config import RunConfig, save_config
from malt.errors import MaltError
from malt.io import ensure_writable, manifest, write_json
from malt.runspec import chain_of

ALL = "all"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The stage's own flags."""
    parser.add_argument("--role", default=ALL,
                        help="which model slot of the chain to train (default: all, in chain "
                             "order; with G -> V -> R: generator, verifier or refiner)")
    parser.add_argument("--restart", action="store_true",
                        help="train the role(s) again from scratch (needed when the role data "
                             "or a setting changed); the old result stays until the new is done")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last checkpoint (the default; kept for scripts)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def main(cfg: RunConfig, args: argparse.Namespace) -> dict[str, Any] | None:
    """CLI entry: train the chosen role(s) and return the summary."""
    from malt.train.settings import process_state

    if args.resume and args.restart:
        raise MaltError("--resume and --restart: choose one")
    roles = chain_of(cfg).models if args.role == ALL else (args.role,)
    summary = run(cfg, roles=roles, restart=args.restart, progress=not args.no_progress)
    return summary if process_state().is_main_process else None  # one summary per launch


def run(cfg: RunConfig, roles: tuple[str, ...] | list[str] | None = None, *,
        restart: bool = False, callbacks: list | None = None, progress: bool = True
        ) -> dict[str, Any]:
    """Train model slots `roles` in order (default: every slot of the chain); returns
    {slot: metrics} plus where models.json was written.

    Each phase shows one progress bar ("verifier DPO": steps and loss) unless `progress` is
    False; TRL's own log lines and the libraries' bars stay off either way.
    """
    from malt.artifacts import models_path, read_models
    from malt.train.progress import quiet_libraries
    from malt.train.role import train_role
    from malt.train.settings import process_state

    roles = chain_of(cfg).models if roles is None else tuple(roles)
    check_inputs(cfg, roles)
    out = cfg.stage_dir("train")
    read_models(models_path(cfg.run_dir), missing_ok=True)  # a broken file stops us here
    state = process_state()
    summary: dict[str, Any] = {}
    consumed: dict[str, Any] = {}
    for role in roles:
        with quiet_libraries():
            result = train_role(cfg, role, restart=restart, callbacks=callbacks,
                                progress=progress)
        summary[role], consumed[role] = result.metrics, result.metrics.get("inputs")
        if state.is_main_process:
            update_models(cfg, role, result)
    if state.is_main_process:
        save_config(cfg, out / "config.yaml")
        write_json(out / "manifest.json", manifest({"stage": "train", "roles": list(roles),
                                                    "consumed": consumed}))
    state.wait_for_everyone()
    return {"models": str(models_path(cfg.run_dir)), "roles": summary}


def check_inputs(cfg: RunConfig, roles: tuple[str, ...] | list[str]) -> None:
    """Everything the roles will read, checked before the first one trains."""
    from malt.train.data import role_files
    from malt.train.role import phases

    label_dir = cfg.stage_dir("label")
    if not label_dir.is_dir():
        raise MaltError(f"{label_dir}: no label stage output (run `malt label` first)")
    slots = chain_of(cfg).models
    unknown = [r for r in roles if r not in slots]
    if unknown:
        raise MaltError(f"--role: unknown model slot {unknown[0]!r} (the chain's: "
                        f"{', '.join(slots)})")
    ensure_writable(cfg.stage_dir("train"))
    for role in roles:
        cfg.models.for_role(role)  # a role without a model is named before any data is read
        role_files(label_dir, role, phases(cfg, role), cfg.data.format)


def update_models(cfg: RunConfig, role: str, result) -> None:
    """Record `role`'s ModelSpecs in models.json, keeping the other roles' entries."""
    from malt.artifacts import models_path, update_role

    specs = {"sft": result.sft, "final": result.final}
    if result.merged is not None:
        specs["merged"] = result.merged
    update_role(models_path(cfg.run_dir), cfg.run_dir, role, specs)
