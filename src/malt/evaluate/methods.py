"""Evaluation methods as data: which roles run, each role's model source, one chain or a vote.

A method is (roles, model source per role, vote). The roles are the run's chain or a part of
it, in chain order; a role whose input was left out (the refiner of G -> R) sees the task's
`absent` text in that slot. A chain's answer is its last role's; when that role states none
(the verifier of G -> V), it is the answer the critique states itself where the task's
verifier states one (arith), else the latest answer before it (G's). A source is `base`,
`sft` (the STaR baselines: each role's SFT adapter) or `final` (MALT: SFT then DPO), see
`malt.artifacts`.

The built-ins are the paper's ten Table-1 columns (v3), its Table-4 ablations (one role from
the base, the others MALT's) and its Table-5 ablations (MALT's agents in shorter chains); a
run config may add its own under `eval.define`. Methods whose chains coincide are evaluated
on the same sampled chains: a method that runs a prefix of another's roles with the same
sources reads that one's chains (SA reads the generator step of MA's chains), and a method
without voting reads chain 0. That keeps comparisons paired and costs one generation per
distinct chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from malt.artifacts import BASE, FINAL, SFT, SOURCES
from malt.chain import GENERATOR as G
from malt.chain import REFINER as R
from malt.chain import VERIFIER as V
from malt.chain import RoleChain
from malt.config import FieldError, MethodConfig, RunConfig
from malt.errors import MaltError

TABLE1, ABLATION, CUSTOM, COST = "table1", "ablation", "custom", "cost"
ALL = None  # a method that runs the whole chain


@dataclass(frozen=True)
class Method:
    """One evaluation setting.

    `roles`: role names (a sub-chain, in chain order), an int n for the chain's first n roles,
    or ALL. `sources`: (role, source) overrides of `default`.
    """

    name: str
    label: str
    roles: tuple[str, ...] | int | None
    default: str
    vote: bool
    sources: tuple[tuple[str, str], ...] = ()
    group: str = TABLE1
    # Compute-matched: vote over as many samples as a full-chain method makes model calls
    # (k chains x the chain's roles), e.g. SA + MV@9 against MALT's 3 x 3 calls.
    matched: bool = False

    def k(self, chains: int, chain: RoleChain) -> int:
        """How many chains this method votes over (1 without a vote)."""
        if not self.vote:
            return 1
        return chains * len(chain) if self.matched else chains

    def chain(self, chain: RoleChain) -> RoleChain:
        """The roles this method runs, from the run's chain."""
        if self.roles is ALL:
            return chain
        if isinstance(self.roles, int):
            return chain.prefix(self.roles)
        return chain.subchain(self.roles)

    def plan(self, chain: RoleChain) -> tuple[RoleChain, tuple[str, ...]]:
        """Its roles and each one's model source."""
        sub = self.chain(chain)
        override = dict(self.sources)
        return sub, tuple(override.get(r.name, self.default) for r in sub)


def _m(name: str, label: str, roles, default: str, vote: bool, group: str = TABLE1,
       matched: bool = False, **sources: str) -> Method:
    return Method(name, label, roles, default, vote, tuple(sources.items()), group, matched)


BUILTIN: dict[str, Method] = {
    m.name: m
    for m in (
        # Table 1 (v3), in the paper's order.
        _m("sa", "Single Agent (SA)", 1, BASE, False),
        _m("sa_mv", "SA + Majority Vote", 1, BASE, True),
        _m("ma", "Multi-Agent (MA)", ALL, BASE, False),
        _m("ma_mv", "MA + Majority Vote", ALL, BASE, True),
        _m("star_sa", "STaR SA", 1, SFT, False),
        _m("star_sa_mv", "STaR SA + MV", 1, SFT, True),
        _m("star_ma", "STaR MA", ALL, SFT, False),
        _m("star_ma_mv", "STaR MA + MV", ALL, SFT, True),
        _m("malt_no_mv", "MALT w/o MV", ALL, FINAL, False),
        _m("malt", "MALT", ALL, FINAL, True),
        # Compute-matched baseline: SA + MV over as many samples as MALT makes model calls.
        _m("sa_mv9", "SA + MV@9 (compute-matched)", 1, BASE, True, COST, matched=True),
        # Table 4: one role untrained (from the base), the others MALT's; majority vote.
        _m("malt_base_generator", "MALT, base G", ALL, FINAL, True, ABLATION, **{G: BASE}),
        _m("malt_base_verifier", "MALT, base V", ALL, FINAL, True, ABLATION, **{V: BASE}),
        _m("malt_base_refiner", "MALT, base R", ALL, FINAL, True, ABLATION, **{R: BASE}),
        # Table 5: MALT's agents in shorter chains; majority vote.
        _m("malt_g", "MALT G only", (G,), FINAL, True, ABLATION),
        _m("malt_gv", "MALT G+V", (G, V), FINAL, True, ABLATION),
        _m("malt_gr", "MALT G+R", (G, R), FINAL, True, ABLATION),
    )
}


def from_config(name: str, spec: MethodConfig) -> Method:
    """A user-defined method (`eval.define.<name>`)."""
    return Method(name=name, label=spec.label or name, roles=tuple(spec.roles) or ALL,
                  default=spec.default, vote=spec.vote, sources=tuple(spec.sources.items()),
                  group=CUSTOM)


def known(cfg: RunConfig) -> dict[str, Method]:
    """Built-ins and the run config's own methods (which may not reuse a built-in's name)."""
    return {**BUILTIN, **{n: from_config(n, s) for n, s in cfg.eval.define.items()}}


def check_config(cfg: RunConfig, chain: RoleChain) -> None:
    """Every named method exists and fits the chain (roles and sources), as a FieldError."""
    for name, spec in cfg.eval.define.items():
        where = f"eval.define.{name}"
        if name in BUILTIN:
            raise FieldError(where, f"{name!r} is a built-in method; pick another name")
        for src in (spec.default, *spec.sources.values()):
            if src not in SOURCES:
                raise FieldError(where, f"unknown source {src!r} (known: {', '.join(SOURCES)})")
        _check_fits(from_config(name, spec), chain, where)
    methods = known(cfg)
    for name in cfg.eval.methods:
        if name not in methods:
            raise FieldError("eval.methods", f"unknown method {name!r} (known: "
                             f"{', '.join(methods)})")
        _check_fits(methods[name], chain, "eval.methods")
    if len(set(cfg.eval.methods)) != len(cfg.eval.methods):
        raise FieldError("eval.methods", "must not repeat a method")


def _check_fits(m: Method, chain: RoleChain, where: str) -> None:
    try:
        sub = m.chain(chain)
    except MaltError as e:
        raise FieldError(where, f"method {m.name!r}: {e}") from None
    for role, _ in m.sources:
        if role not in sub.names:
            raise FieldError(where, f"method {m.name!r} sets a source for {role!r}, which it "
                             f"does not run (it runs {', '.join(sub.names)})")


def get_methods(cfg: RunConfig, names: Iterable[str]) -> list[Method]:
    """Methods by name, in the given order."""
    methods = known(cfg)
    out = []
    for name in names:
        if name not in methods:
            raise MaltError(f"eval.methods: unknown method {name!r} (known: {', '.join(methods)})")
        out.append(methods[name])
    return out


@dataclass(frozen=True)
class Group:
    """Methods evaluated on one set of sampled chains: the longest one's roles and sources."""

    key: str  # its folder name under eval/chains
    chain: RoleChain
    sources: tuple[str, ...]
    methods: tuple[Method, ...]
    matched: bool = False

    def specs_needed(self) -> dict[str, tuple[str, str]]:
        """role -> (model slot, source)."""
        return {r.name: (r.model, s) for r, s in zip(self.chain, self.sources, strict=True)}


def groups(methods: Iterable[Method], chain: RoleChain) -> list[Group]:
    """Group methods that share chains: a method joins a group whose roles and sources start
    with its own (same `sees`), longest plans first; groups keep first-use order."""
    plans = {m.name: m.plan(chain) for m in methods}
    methods = list(methods)
    order = sorted(methods, key=lambda m: -len(plans[m.name][0]))
    found: list[tuple[RoleChain, tuple[str, ...], list[Method]]] = []
    for m in order:
        sub, src = plans[m.name]
        for g_chain, g_src, members in found:
            if (g_chain.roles[:len(sub)] == sub.roles and g_src[:len(src)] == src
                    and members[0].matched == m.matched):
                members.append(m)
                break
        else:
            found.append((sub, src, [m]))
    first_use = {m.name: i for i, m in enumerate(methods)}
    found.sort(key=lambda g: min(first_use[m.name] for m in g[2]))
    return [Group(_key(g_chain, g_src, chain) + ("-matched" if members[0].matched else ""),
                  g_chain, g_src, tuple(sorted(members, key=lambda m: first_use[m.name])),
                  members[0].matched)
            for g_chain, g_src, members in found]


def _key(sub: RoleChain, sources: tuple[str, ...], chain: RoleChain) -> str:
    """`final` for the whole chain from one source (the folder names of earlier versions),
    else each role's letter and source: `g.base-v.final-r.final`."""
    if sub.names == chain.names and len(set(sources)) == 1:
        return sources[0]
    return "-".join(f"{r.letter}.{s}" for r, s in zip(sub, sources, strict=True))


def method_roles(m: Method, chain: RoleChain) -> Mapping[str, str]:
    """role -> source, for the report."""
    sub, src = m.plan(chain)
    return dict(zip(sub.names, src, strict=True))
