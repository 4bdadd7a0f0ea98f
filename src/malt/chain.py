"""The role chain: which agents run, in which order, what each sees and which model it trains.

MALT's pipeline is one chain, the paper's G -> V -> R (`DEFAULT`). Every stage reads the
chain instead of naming roles: the tree sampler expands it level by level, credit flows back
through it, the label stage builds each role's datasets from it, `malt train` trains one
model per `model` slot, and `malt eval` runs the chain (or a part of it) with each role's
model taken from a source. A role is:

- `name`: unique in the chain; the `role` of its tree nodes, its seed key, its config keys
  (`generate.<name>`) and its column in eval records;
- `template`: the task's prompt template it fills (`generator`, `verifier` or `refiner`);
- `sees`: which earlier role's output fills each slot of that template (`answer`: the
  answer under review, `critique`: a critique of it);
- `answers`: whether it states a final answer (graded; the last role must);
- `pairs`: whether DPO pairs are built among its siblings (paper: not for the generator);
- `model`: the trained model it runs (`models.<model>`, `train.<model>`, its adapters);
  several roles may share one, e.g. the second verifier of G -> V -> R -> V -> R;
- `letter`: the step of its node ids (`q1/g0/v2/r1`).

The templates give sensible defaults, so a chain is usually a list of names:
`[generator, verifier, refiner, {name: verifier2, template: verifier, model: verifier},
{name: refiner2, template: refiner, model: refiner}]`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from malt.errors import MaltError

# The template kinds the tasks provide, and the slots each one fills from earlier outputs.
GENERATOR, VERIFIER, REFINER = "generator", "verifier", "refiner"
ANSWER, CRITIQUE = "answer", "critique"
SLOTS: dict[str, tuple[str, ...]] = {GENERATOR: (), VERIFIER: (ANSWER,), REFINER: (ANSWER, CRITIQUE)}
_LETTER = re.compile(r"[a-z][a-z0-9]*")


class ChainError(MaltError):
    """A chain entry that does not hold; `field` is its dotted config name (`chain[3].sees`)."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


@dataclass(frozen=True)
class Role:
    """One agent of the chain (see the module docstring)."""

    name: str
    template: str
    letter: str
    sees: tuple[tuple[str, str], ...]  # (template slot, earlier role name)
    answers: bool
    pairs: bool
    model: str

    def source_of(self, slot: str) -> str | None:
        return dict(self.sees).get(slot)


@dataclass(frozen=True)
class RoleChain:
    """An ordered list of roles; level k of a tree holds role k's outputs."""

    roles: tuple[Role, ...]

    def __iter__(self) -> Iterator[Role]:
        return iter(self.roles)

    def __len__(self) -> int:
        return len(self.roles)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.roles)

    @property
    def models(self) -> tuple[str, ...]:
        """The model slots in chain order, each once."""
        return tuple(dict.fromkeys(r.model for r in self.roles))

    @property
    def leaf(self) -> Role:
        return self.roles[-1]

    def role(self, name: str) -> Role:
        for r in self.roles:
            if r.name == name:
                return r
        raise MaltError(f"no role {name!r} in the chain (roles: {', '.join(self.names)})")

    def parent(self, name: str) -> Role | None:
        """The role one level up (None for the first)."""
        i = self.names.index(name)
        return self.roles[i - 1] if i else None

    def using(self, model: str) -> tuple[Role, ...]:
        """The roles that run model slot `model`."""
        return tuple(r for r in self.roles if r.model == model)

    def prefix(self, n: int) -> RoleChain:
        return RoleChain(self.roles[:n])

    def subchain(self, names: Sequence[str]) -> RoleChain:
        """The roles named, in chain order; a slot whose source is left out stays empty
        (the task's template then shows its `absent` text)."""
        keep = [self.role(n) for n in names]
        if [r.name for r in keep] != [n for n in self.names if n in names]:
            raise MaltError(f"roles {list(names)} are not in chain order ({', '.join(self.names)})")
        kept = {r.name for r in keep}
        return RoleChain(tuple(replace(r, sees=tuple((s, src) for s, src in r.sees if src in kept))
                               for r in keep))

    def describe(self) -> str:
        """`G -> V -> R`, from the letters."""
        return " -> ".join(r.letter.upper() for r in self.roles)


def build_chain(entries: Sequence[str | Mapping[str, Any]], where: str = "chain") -> RoleChain:
    """A chain from config entries (a name, or a mapping of Role fields); checks it whole.

    >>> build_chain(["generator", "verifier", "refiner"]).describe()
    'G -> V -> R'
    >>> c = build_chain(["generator", "verifier", "refiner",
    ...                  {"name": "verifier2", "template": "verifier", "model": "verifier"},
    ...                  {"name": "refiner2", "template": "refiner"}])
    >>> c.role("verifier2").sees, c.role("verifier2").letter, c.models
    ((('answer', 'refiner'),), 'v2', ('generator', 'verifier', 'refiner', 'refiner2'))
    """
    if not entries:
        raise ChainError(where, "needs at least one role")
    roles: list[Role] = []
    for i, entry in enumerate(entries):
        roles.append(_role(entry, roles, f"{where}[{i}]"))
    _check(roles, where)
    return RoleChain(tuple(roles))


_FIELDS = ("name", "template", "letter", "sees", "answers", "pairs", "model")


def _role(entry: str | Mapping[str, Any], earlier: list[Role], where: str) -> Role:
    raw = {"name": entry} if isinstance(entry, str) else dict(entry)
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise ChainError(f"{where}.{unknown[0]}", f"unknown field (known: {', '.join(_FIELDS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ChainError(f"{where}.name", "needs a role name")
    template = raw.get("template") or name
    if template not in SLOTS:
        raise ChainError(f"{where}.template", f"{template!r} is not a template kind "
                         f"(known: {', '.join(SLOTS)}); name one for role {name!r}")
    letter = raw.get("letter") or _letter(name, template, earlier)
    sees = raw.get("sees")
    if sees is None:
        sees = _default_sees(template, earlier)
    if not isinstance(sees, Mapping) or not all(isinstance(v, str) for v in sees.values()):
        raise ChainError(f"{where}.sees", "expected a mapping of template slot -> earlier role")
    answers = raw.get("answers", template != VERIFIER)
    pairs = raw.get("pairs", template != GENERATOR)
    model = raw.get("model") or name
    for key, value in (("answers", answers), ("pairs", pairs)):
        if not isinstance(value, bool):
            raise ChainError(f"{where}.{key}", f"expected true or false, got {value!r}")
    for key, value in (("letter", letter), ("model", model)):
        if not isinstance(value, str):
            raise ChainError(f"{where}.{key}", f"expected a string, got {value!r}")
    return Role(name=name, template=template, letter=letter,
                sees=tuple((slot, src) for slot, src in sees.items()),
                answers=answers, pairs=pairs, model=model)


def _letter(name: str, template: str, earlier: list[Role]) -> str:
    """The template's initial, numbered from 2 when it repeats (`v`, `v2`)."""
    base = template[0]
    taken = {r.letter for r in earlier}
    if base not in taken:
        return base
    k = 2
    while f"{base}{k}" in taken:
        k += 1
    return f"{base}{k}"


def _default_sees(template: str, earlier: list[Role]) -> dict[str, str]:
    """A verifier reviews the latest answer; a refiner also reads the critique just written."""
    out: dict[str, str] = {}
    latest_answer = next((r.name for r in reversed(earlier) if r.answers), None)
    if ANSWER in SLOTS[template] and latest_answer is not None:
        out[ANSWER] = latest_answer
    if CRITIQUE in SLOTS[template] and earlier and not earlier[-1].answers:
        out[CRITIQUE] = earlier[-1].name
    return out


def _check(roles: list[Role], where: str) -> None:
    seen: dict[str, int] = {}
    letters: set[str] = set()
    for i, r in enumerate(roles):
        at = f"{where}[{i}]"
        if r.name in seen:
            raise ChainError(f"{at}.name", f"role {r.name!r} appears twice")
        if not _LETTER.fullmatch(r.letter) or r.letter in letters:
            raise ChainError(f"{at}.letter", f"{r.letter!r} must be lowercase letters/digits, "
                             "starting with a letter, and unique in the chain")
        for slot, src in r.sees:
            if slot not in SLOTS[r.template]:
                raise ChainError(f"{at}.sees", f"the {r.template} template has no slot "
                                 f"{slot!r} (slots: {', '.join(SLOTS[r.template]) or 'none'})")
            if src not in seen:
                raise ChainError(f"{at}.sees.{slot}", f"{src!r} is not an earlier role")
        seen[r.name] = i
        letters.add(r.letter)
    if not roles[-1].answers:
        raise ChainError(where, f"the last role ({roles[-1].name}) must state an answer, "
                         "since its answers are graded")


def check_keys(keys: Iterable[str], known: Iterable[str], where: str, what: str) -> None:
    """Every key of a per-role config section names a role (or model slot) of the chain."""
    known = list(known)
    for key in keys:
        if key not in known:
            raise ChainError(f"{where}.{key}", f"no {what} of that name in the chain "
                             f"(the chain's {what}s: {', '.join(known)})")


DEFAULT_NAMES = (GENERATOR, VERIFIER, REFINER)
DEFAULT = build_chain(list(DEFAULT_NAMES))
