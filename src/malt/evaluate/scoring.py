"""From sampled chains to per-question records, and from records to the results table.

Pure functions over typed values: no files, no models. A record is one question under one
method and seed: every chain's texts and answers, the vote, and whether the vote is correct;
for a multi-agent method also the vote after each turn (`malt.evaluate.turns`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from malt.chain import RoleChain
from malt.evaluate.chains import Chain, prompt_counted
from malt.evaluate.methods import Method, method_roles
from malt.evaluate.stats import mean_std, paired_bootstrap
from malt.evaluate.turns import answer_key, turn_votes, turnwise_over_seeds, turnwise_seed
from malt.evaluate.vote import majority_vote
from malt.records import Problem
from malt.tasks.base import Task

REFERENCE = "malt"  # every other method is compared with this one


def select_subset(problems: Sequence[Problem], size: int | None, seed: int) -> list[Problem]:
    """A seeded random subset of `size` problems in file order (all of them when None).

    >>> ps = [Problem(id=str(i), question="q", answer="1", task="t") for i in range(10)]
    >>> [p.id for p in select_subset(ps, 3, seed=0)] == [p.id for p in select_subset(ps, 3, 0)]
    True
    >>> len(select_subset(ps, None, 0)), len(select_subset(ps, 50, 0))
    (10, 10)
    """
    if size is None or size >= len(problems):
        return list(problems)
    picked = sorted(random.Random(seed).sample(range(len(problems)), size))
    return [problems[i] for i in picked]


def chain_view(chain: Chain, roles: RoleChain, problem: Problem, task: Task) -> dict[str, Any]:
    """What a record keeps of one chain: the texts of `roles` (its first len(roles) steps),
    each role's answer and, for the last, whether it is right.

    Keys: `<role>` (text), `<role>_answer` and `<role>_correct` for every role but the last
    (a critic's answer is the one its critique states itself, None where the task's verifier
    states none), `answer` and `correct` for the last. A critic at the end (G -> V) answers
    with its critique's own answer, else the latest answer before it.
    """
    def grade(answer: str | None) -> bool:
        return answer is not None and task.is_equivalent(answer, problem.answer)

    view: dict[str, Any] = {}
    latest: str | None = None
    for i, (role, step) in enumerate(zip(roles, chain.steps, strict=False)):
        last = i == len(roles) - 1
        answer = step.answer if role.answers else task.critique_answer(step.text)
        if role.answers:
            latest = answer
        view[role.name] = step.text
        if last:
            view["answer"] = answer if role.answers or answer is not None else latest
            view["correct"] = grade(view["answer"])
        else:
            view[answer_key(role.name, False)] = answer
            if role.answers:
                view[f"{role.name}_correct"] = grade(answer)
    return view


def method_record(
    method: Method, chain: RoleChain, problem: Problem, chains: Sequence[Chain], k: int,
    task: Task,
) -> dict[str, Any]:
    """The record of one question under `method`: chain 0 alone, or a vote over k chains."""
    roles = method.chain(chain)
    used = list(chains[:k] if method.vote else chains[:1])
    views = [chain_view(c, roles, problem, task) for c in used]
    vote = majority_vote([v["answer"] for v in views], task.is_equivalent)
    correct = vote.answer is not None and task.is_equivalent(vote.answer, problem.answer)
    record = {
        "id": problem.id,
        "question": problem.question,
        "gold": problem.answer,
        "chains": views,
        "vote": vote.answer,
        "votes": vote.votes,
        "supporters": list(vote.supporters),
        "no_answer": vote.answer is None,
        "correct": bool(correct),
        "cost": chain_cost(used, len(roles)),
    }
    if len(roles) > 1:
        record["turns"] = turn_votes(views, roles.names, problem, task)
    return record


def chain_cost(chains: Sequence[Chain], n_roles: int) -> dict[str, int]:
    """What the chains of one question cost: model calls, prompt and completion tokens.

    The chains of a question share their first role's prompt (its k samples are one call's n
    in the token ledger), so that prompt counts once; every later step is its own prompt.
    """
    steps = [(i, j, s) for i, c in enumerate(chains) for j, s in enumerate(c.steps[:n_roles])]
    return {"calls": len(steps),
            "prompt_tokens": sum(s.prompt_tokens or 0 for i, j, s in steps
                                 if prompt_counted(i, j)),
            "completion_tokens": sum(s.num_tokens or 0 for _, _, s in steps)}


def seed_summary(records: Sequence[Mapping[str, Any]], roles: RoleChain) -> dict[str, Any]:
    """Accuracy, counts, unanswered questions; for a multi-agent method, what the roles after
    the first did.

    `fixed` counts chains whose first role's answer (G's) was wrong and final answer right,
    `broken` the reverse, over every chain of every question; `turnwise` is the vote's
    accuracy after each turn (see `malt.evaluate.turns`).
    """
    n = len(records)
    correct = sum(1 for r in records if r["correct"])
    costs = [r["cost"] for r in records if "cost" in r]
    tokens = sum(c["prompt_tokens"] + c["completion_tokens"] for c in costs)
    out = {
        "accuracy": correct / n if n else 0.0,
        "correct": correct,
        "n": n,
        "calls_per_question": _rate(sum(c["calls"] for c in costs), len(costs)),
        "tokens_per_question": _rate(tokens, len(costs)),
        # Accuracy (0..1) per 1,000 tokens spent per question: the compute-fair comparison.
        "accuracy_per_1k_tokens": _rate(correct / n, tokens / len(costs) / 1000)
        if n and costs and tokens else None,
        "no_answer": sum(1 for r in records if r["no_answer"]),
        "chains": sum(len(r["chains"]) for r in records),
        "chain_accuracy": _rate(sum(c["correct"] for r in records for c in r["chains"]),
                                sum(len(r["chains"]) for r in records)),
    }
    first = f"{roles.roles[0].name}_correct"
    chains = [c for r in records for c in r["chains"] if first in c]
    if chains:
        out["fixed"] = sum(1 for c in chains if c["correct"] and not c[first])
        out["broken"] = sum(1 for c in chains if c[first] and not c["correct"])
    if records and all("turns" in r for r in records):
        out.update(turnwise_seed(records, [r.name for r in roles if not r.answers]))
    return out


def _rate(a: int, b: int) -> float:
    return a / b if b else 0.0


def build_results(
    methods: Sequence[Method],
    chain: RoleChain,
    records: Mapping[tuple[str, int], Sequence[Mapping[str, Any]]],
    seeds: Sequence[int],
    samples: int,
    confidence: float,
    bootstrap_seed: int,
) -> dict[str, Any]:
    """Per-method mean/std over seeds (overall and per turn); paired bootstrap CI of MALT - each."""
    table: dict[str, Any] = {}
    for m in methods:
        roles = m.chain(chain)
        per_seed = {str(s): seed_summary(records[(m.name, s)], roles) for s in seeds}
        mean, std = mean_std([v["accuracy"] for v in per_seed.values()])
        sources = method_roles(m, chain)
        costs = [v for v in per_seed.values() if v["tokens_per_question"]]
        table[m.name] = {"label": m.label, "group": m.group, "roles": list(roles.names),
                         "calls_per_question": _mean([v["calls_per_question"] for v in costs]),
                         "tokens_per_question": _mean([v["tokens_per_question"] for v in costs]),
                         "chain": roles.describe(), "sources": sources,
                         "source": _one_source(sources), "multi_agent": len(roles) > 1,
                         "vote": m.vote, "per_seed": per_seed, "mean": mean, "std": std}
        if all("turnwise" in v for v in per_seed.values()):
            table[m.name]["turnwise"] = turnwise_over_seeds(per_seed)
            table[m.name]["turn_labels"] = {r.name: f"after {r.letter.upper()}" for r in roles}
    out: dict[str, Any] = {"methods": table, "order": [m.name for m in methods]}
    if REFERENCE in table:
        ref = _units(records, REFERENCE, seeds)
        out["comparisons"] = {
            "reference": REFERENCE,
            "vs": {
                m.name: paired_bootstrap(ref, _units(records, m.name, seeds), samples,
                                         confidence, bootstrap_seed).to_dict()
                for m in methods if m.name != REFERENCE
            },
        }
    return out


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _one_source(sources: Mapping[str, str]) -> str:
    """`base`, `sft` or `final` when every role has it, else `mixed`."""
    kinds = set(sources.values())
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _units(
    records: Mapping[tuple[str, int], Sequence[Mapping[str, Any]]], name: str, seeds: Sequence[int]
) -> dict[tuple[int, str], bool]:
    return {(s, r["id"]): bool(r["correct"]) for s in seeds for r in records[(name, s)]}
