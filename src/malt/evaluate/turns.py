"""Turn-wise accuracy (the paper's Fig. 3): how right the vote is after each role of a chain.

For one question under a multi-agent method, the chains the method uses (all k with a vote,
chain 0 without) are voted on once per role with the ordinary majority vote, over the answers
the chains state at that turn: an answering role's answer, or for a critic (a role that
states no answer, the verifier) the answer its critique states itself (`Task.critique_answer`;
a critique that states none abstains); the last turn is the method's own vote. A critic whose
critiques never state an answer has no accuracy: it is None, not 0. With G -> V -> R the
turns are after G, after V and after R.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from malt.chain import DEFAULT
from malt.evaluate.stats import mean_std
from malt.evaluate.vote import majority_vote
from malt.records import Problem
from malt.tasks.base import Task


def answer_key(role: str, last: bool) -> str:
    """Which answer of a record's chain view a role's turn votes over."""
    return "answer" if last else f"{role}_answer"


def turn_votes(views: Sequence[Mapping[str, Any]], roles: Sequence[str], problem: Problem,
               task: Task) -> dict[str, Any]:
    """Per turn, the vote over the chains' answers at that turn and whether it is right."""
    out = {}
    for i, role in enumerate(roles):
        key = answer_key(role, i == len(roles) - 1)
        vote = majority_vote([v.get(key) for v in views], task.is_equivalent)
        right = vote.answer is not None and task.is_equivalent(vote.answer, problem.answer)
        out[role] = {"vote": vote.answer, "correct": bool(right)}
    return out


def turnwise_seed(records: Sequence[Mapping[str, Any]],
                  critics: Sequence[str] = tuple(r.name for r in DEFAULT if not r.answers)
                  ) -> dict[str, Any]:
    """One seed's accuracy after each turn and how many of each critic's critiques stated an
    answer (`<critic>_answers`).

    >>> rec = lambda g, v, r, said: {"turns": {"generator": {"correct": g},
    ...     "verifier": {"correct": v}, "refiner": {"correct": r}},
    ...     "chains": [{"verifier_answer": "3" if said else None}]}
    >>> turnwise_seed([rec(False, True, True, True), rec(True, False, True, False)])
    {'turnwise': {'generator': 0.5, 'verifier': 0.5, 'refiner': 1.0}, 'verifier_answers': 1}
    >>> turnwise_seed([rec(False, False, True, False)])["turnwise"]["verifier"] is None
    True
    """
    n = len(records)
    roles = list(records[0]["turns"]) if records else []
    acc: dict[str, float | None] = {
        role: sum(1 for r in records if r["turns"][role]["correct"]) / n if n else 0.0
        for role in roles
    }
    out: dict[str, Any] = {"turnwise": acc}
    for critic in (c for c in critics if c in acc):
        key = answer_key(critic, critic == roles[-1])
        stated = sum(1 for r in records for c in r["chains"] if c.get(key) is not None)
        if not stated:
            acc[critic] = None
        out[f"{critic}_answers"] = stated
    return out


def turnwise_over_seeds(per_seed: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and std over seeds of each turn's accuracy; None for a turn no seed has.

    A seed whose critiques stated no answer counts 0 after V when another seed's did.

    >>> seeds = {"0": {"turnwise": {"generator": 0.5, "verifier": None, "refiner": 0.7}},
    ...          "1": {"turnwise": {"generator": 0.7, "verifier": None, "refiner": 0.7}}}
    >>> out = turnwise_over_seeds(seeds)
    >>> out["generator"], out["verifier"], out["refiner"]
    ({'mean': 0.6, 'std': 0.141421356237}, None, {'mean': 0.7, 'std': 0.0})
    """
    out: dict[str, Any] = {}
    roles = next(iter(per_seed.values()))["turnwise"] if per_seed else {}
    for role in roles:
        values = [s["turnwise"][role] for s in per_seed.values()]
        if all(v is None for v in values):
            out[role] = None
            continue
        mean, std = mean_std([v if v is not None else 0.0 for v in values])
        out[role] = {"mean": mean, "std": std}
    return out
