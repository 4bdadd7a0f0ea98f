"""What a run config means beyond its types: its role chain, and the names it uses.

`malt.config` checks types and ranges; the registries check names here, once the config is
parsed (`load_config(..., checks=CHECKS)`), so a wrong task, role or method name is still one
sentence naming its file line or override.
"""

from __future__ import annotations

from malt.backends.base import SamplingParams
from malt.chain import ChainError, RoleChain, build_chain, check_keys
from malt.config import FieldError, RunConfig


def chain_of(cfg: RunConfig) -> RoleChain:
    """The run's role chain (the paper's G -> V -> R unless the config names another)."""
    try:
        return build_chain(cfg.chain)
    except ChainError as e:
        raise FieldError(e.field, e.reason) from None


def sampling_of(cfg: RunConfig, chain: RoleChain) -> dict[str, SamplingParams]:
    """Each role's tree sampling settings (`generate.<role>`)."""
    out = {}
    for role in chain:
        s = cfg.generate.role(role.name)
        out[role.name] = SamplingParams(n=s.n, temperature=s.temperature, top_p=s.top_p,
                                        max_new_tokens=s.max_new_tokens)
    return out


def check_task(cfg: RunConfig) -> None:
    from malt.tasks import TASKS

    if cfg.task.name not in TASKS:
        raise FieldError("task.name", f"unknown task {cfg.task.name!r} (known: {', '.join(TASKS)})")


def check_chain(cfg: RunConfig) -> None:
    """The chain holds, and every per-role section names one of its roles or model slots."""
    chain = chain_of(cfg)
    try:
        check_keys(cfg.generate.roles, chain.names, "generate", "role")
        check_keys(cfg.models.roles, chain.models, "models", "model slot")
        check_keys(cfg.train.roles, chain.models, "train", "model slot")
    except ChainError as e:
        raise FieldError(e.field, e.reason) from None


def check_methods(cfg: RunConfig) -> None:
    from malt.evaluate.methods import check_config

    check_config(cfg, chain_of(cfg))


CHECKS = (check_task, check_chain, check_methods)
