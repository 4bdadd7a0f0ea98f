"""From sampled chains to per-question records, and from records to the results table.

Pure functions over typed values: no files, no models. A record is one question under one
method and seed: every chain's texts and answers, the vote, and whether the vote is correct;
for G -> V -> R also the vote after each turn (`malt.evaluate.turns`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from malt.evaluate.chains import Chain
from malt.evaluate.methods import Method
from malt.evaluate.stats import mean_std, paired_bootstrap
from malt.evaluate.turns import turn_votes, turnwise_over_seeds, turnwise_seed
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


def chain_view(chain: Chain, multi_agent: bool, problem: Problem, task: Task) -> dict[str, Any]:
    """What a record keeps of one chain: all its texts (G only for single agent), graded.

    A multi-agent view also keeps the answer the critique states itself (None where the task's
    verifier states none), for turn-wise accuracy.
    """
    def grade(answer: str | None) -> bool:
        return answer is not None and task.is_equivalent(answer, problem.answer)

    if not multi_agent:
        return {"generator": chain.generator, "answer": chain.generator_answer,
                "correct": grade(chain.generator_answer)}
    return {
        "generator": chain.generator,
        "generator_answer": chain.generator_answer,
        "generator_correct": grade(chain.generator_answer),
        "verifier": chain.verifier,
        "verifier_answer": task.critique_answer(chain.verifier) if chain.verifier else None,
        "refiner": chain.refiner,
        "answer": chain.refiner_answer,
        "correct": grade(chain.refiner_answer),
    }


def method_record(
    method: Method, problem: Problem, chains: Sequence[Chain], k: int, task: Task
) -> dict[str, Any]:
    """The record of one question under `method`: chain 0 alone, or a vote over k chains."""
    used = list(chains[:k] if method.vote else chains[:1])
    views = [chain_view(c, method.multi_agent, problem, task) for c in used]
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
    }
    if method.multi_agent:
        record["turns"] = turn_votes(views, problem, task)
    return record


def seed_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracy, counts, unanswered questions; for G -> V -> R, what refinement did.

    `fixed` counts chains whose generator answer was wrong and final answer right, `broken`
    the reverse, over every chain of every question; `turnwise` is the vote's accuracy after
    each turn (see `malt.evaluate.turns`).
    """
    n = len(records)
    correct = sum(1 for r in records if r["correct"])
    out = {
        "accuracy": correct / n if n else 0.0,
        "correct": correct,
        "n": n,
        "no_answer": sum(1 for r in records if r["no_answer"]),
        "chains": sum(len(r["chains"]) for r in records),
        "chain_accuracy": _rate(sum(c["correct"] for r in records for c in r["chains"]),
                                sum(len(r["chains"]) for r in records)),
    }
    chains = [c for r in records for c in r["chains"] if "generator_correct" in c]
    if chains:
        out["fixed"] = sum(1 for c in chains if c["correct"] and not c["generator_correct"])
        out["broken"] = sum(1 for c in chains if c["generator_correct"] and not c["correct"])
    if records and all("turns" in r for r in records):
        out.update(turnwise_seed(records))
    return out


def _rate(a: int, b: int) -> float:
    return a / b if b else 0.0


def build_results(
    methods: Sequence[Method],
    records: Mapping[tuple[str, int], Sequence[Mapping[str, Any]]],
    seeds: Sequence[int],
    samples: int,
    confidence: float,
    bootstrap_seed: int,
) -> dict[str, Any]:
    """Per-method mean/std over seeds (overall and per turn); paired bootstrap CI of MALT - each."""
    table: dict[str, Any] = {}
    for m in methods:
        per_seed = {str(s): seed_summary(records[(m.name, s)]) for s in seeds}
        mean, std = mean_std([v["accuracy"] for v in per_seed.values()])
        table[m.name] = {"label": m.label, "source": m.source, "multi_agent": m.multi_agent,
                         "vote": m.vote, "per_seed": per_seed, "mean": mean, "std": std}
        if all("turnwise" in v for v in per_seed.values()):
            table[m.name]["turnwise"] = turnwise_over_seeds(per_seed)
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


def _units(
    records: Mapping[tuple[str, int], Sequence[Mapping[str, Any]]], name: str, seeds: Sequence[int]
) -> dict[tuple[int, str], bool]:
    return {(s, r["id"]): bool(r["correct"]) for s in seeds for r in records[(name, s)]}
