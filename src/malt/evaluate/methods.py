"""The paper's evaluation settings: which model each role runs, one chain or a vote.

Every method reads its models from one *source*: `base` (the config's `models`), `sft` (the
STaR baselines: every role SFT-trained on its positives, `train/models.json` "sft") or
`final` (MALT: SFT then DPO, `train/models.json` "final"). Methods that share a source are
evaluated on the same sampled chains: SA reads the generator step of the chains that MA
continues, and a method without voting reads chain 0 of the chains the voting method uses.
That keeps comparisons paired and costs one generation per source.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from malt.backends.base import ModelSpec
from malt.config import RunConfig
from malt.errors import MaltError
from malt.io import read_json
from malt.records import GENERATOR, ROLES

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


def load_trained(path: Path) -> dict[str, Any]:
    """Read `train/models.json`; a missing or malformed file is one clear error."""
    if not path.is_file():
        raise MaltError(
            f"{path}: not found; run `malt train` first or drop the star_*/malt* methods "
            "from eval.methods"
        )
    data = read_json(path)
    if not isinstance(data, dict):
        raise MaltError(f"{path}: expected a mapping of role -> specs")
    return data


def trained_specs(trained: Mapping[str, Any], stage: str, where: Path) -> dict[str, ModelSpec]:
    """The `stage` ("sft" or "final") ModelSpec of every role listed in models.json."""
    specs = {}
    for role in ROLES:
        entry = trained.get(role, {})
        spec = entry.get(stage) if isinstance(entry, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("model"), str):
            raise MaltError(f"{where}: {role}.{stage} needs a mapping with a 'model' string")
        adapter = spec.get("adapter")
        if adapter is not None and not isinstance(adapter, str):
            raise MaltError(f"{where}: {role}.{stage}.adapter must be a path string or null")
        specs[role] = ModelSpec(model=spec["model"], adapter=adapter)
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
        path = cfg.stage_dir("train") / "models.json"
        all_specs = trained_specs(load_trained(path), source, path)
        where = str(path)
    specs = {role: all_specs[role] for role in roles}
    for role, spec in specs.items():
        check_spec(spec, f"{where} ({role}.{source})")
    return specs
