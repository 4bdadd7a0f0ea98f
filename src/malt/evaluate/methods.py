"""The paper's evaluation settings: which model each role runs, one chain or a vote.

Every method reads its models from one *source*: `base` (the config's `models`), `sft` (the
STaR baselines: every role SFT-trained on its positives, `train/models.json` "sft") or
`final` (MALT: SFT then DPO, `train/models.json` "final"). Methods that share a source are
evaluated on the same sampled chains: SA reads the generator step of the chains that MA
continues, and a method without voting reads chain 0 of the chains the voting method uses.
That keeps comparisons paired and costs one generation per source.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from malt.backends.base import ModelSpec
from malt.config import RunConfig
from malt.errors import MaltError
from malt.records import GENERATOR, ROLES
from malt.train.models_json import models_path, read_models, resolve

BASE, SFT, FINAL = "base", "sft", "final"


@dataclass(frozen=True)
class Method:
    """One row of Table 1 (the paper's ten columns, v3)."""

    name: str
    label: str
    source: str  # base | sft | final
    multi_agent: bool  # G -> V -> R, or the generator alone
    vote: bool  # majority vote over k chains, or chain 0 alone

    @property
    def roles(self) -> tuple[str, ...]:
        return ROLES if self.multi_agent else (GENERATOR,)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("sa", "Single Agent (SA)", BASE, False, False),
        Method("sa_mv", "SA + Majority Vote", BASE, False, True),
        Method("ma", "Multi-Agent (MA)", BASE, True, False),
        Method("ma_mv", "MA + Majority Vote", BASE, True, True),
        Method("star_sa", "STaR SA", SFT, False, False),
        Method("star_sa_mv", "STaR SA + MV", SFT, False, True),
        Method("star_ma", "STaR MA", SFT, True, False),
        Method("star_ma_mv", "STaR MA + MV", SFT, True, True),
        Method("malt_no_mv", "MALT w/o MV", FINAL, True, False),
        Method("malt", "MALT", FINAL, True, True),
    )
}


def get_methods(names: Iterable[str]) -> list[Method]:
    """Methods by name, in the given order; unknown names raise naming `eval.methods`."""
    out = []
    for name in names:
        if name not in METHODS:
            raise MaltError(f"eval.methods: unknown method {name!r} (known: {', '.join(METHODS)})")
        out.append(METHODS[name])
    return out


def by_source(methods: Iterable[Method]) -> dict[str, list[Method]]:
    """Group methods that can share one set of sampled chains, keeping source order."""
    groups: dict[str, list[Method]] = {}
    for m in methods:
        groups.setdefault(m.source, []).append(m)
    return groups


def base_specs(cfg: RunConfig) -> dict[str, ModelSpec]:
    """The untrained model of every role, from the config's `models` section."""
    return {role: ModelSpec(model=cfg.models.for_role(role)) for role in ROLES}


def trained_specs(cfg: RunConfig, stage: str) -> dict[str, ModelSpec]:
    """The `stage` ("sft" or "final") ModelSpec of every role, from `train/models.json`."""
    path = models_path(cfg.run_dir)
    trained = read_models(path)
    specs = {}
    for role in ROLES:
        spec = trained.get(role, {}).get(stage)
        if spec is None:
            raise MaltError(f"{path}: {role}.{stage} is missing (run `malt train --role {role}`)")
        specs[role] = resolve(spec, cfg.run_dir)
    return specs


def check_spec(spec: ModelSpec, where: str) -> None:
    """Fail early on an adapter folder that is missing or holds no adapter config."""
    if spec.adapter is None:
        return
    folder = Path(spec.adapter)
    if not (folder / "adapter_config.json").is_file():
        raise MaltError(f"{where}: adapter {spec.adapter} is not a readable PEFT adapter folder")


def source_specs(cfg: RunConfig, source: str, roles: Iterable[str]) -> dict[str, ModelSpec]:
    """ModelSpec per needed role for a method source, checked before any model loads."""
    if source == BASE:
        all_specs = base_specs(cfg)
        where = "models"
    else:
        all_specs = trained_specs(cfg, source)
        where = str(models_path(cfg.run_dir))
    specs = {role: all_specs[role] for role in roles}
    for role, spec in specs.items():
        check_spec(spec, f"{where} ({role}.{source})")
    return specs
