"""Turn-wise accuracy from hand-built chains: the vote after G, V and R, per seed and overall."""

import dataclasses
import doctest
import itertools

import pytest
from fakes import TOY, critique_answer

import malt.evaluate.scoring as scoring_mod
import malt.evaluate.store as store_mod
import malt.evaluate.turns as turns_mod
from malt.chain import DEFAULT
from malt.evaluate.chains import Chain, Step
from malt.evaluate.methods import BUILTIN as METHODS
from malt.evaluate.scoring import build_results, method_record
from malt.records import Problem

TASK = dataclasses.replace(TOY, critique_answer_fn=critique_answer)


@pytest.mark.parametrize("module", [turns_mod, scoring_mod, store_mod])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


def chain(g, v, r) -> Chain:
    """A G -> V -> R chain stating these answers (None: no answer)."""
    return Chain((Step("generator", f"Answer: {g}" if g is not None else "hm", g),
                  Step("verifier", f"I get {v}." if v is not None else "Looks fine.", None),
                  Step("refiner", f"Answer: {r}", r)))


PROBLEM = Problem(id="q", question="What is 3+4?", answer="7", task="toy")
CHAINS = [chain("6", "7", "7"), chain("7", None, "8"), chain("6", "6", "7")]


def test_turn_votes_of_a_voting_and_a_single_chain_method():
    mv = method_record(METHODS["ma_mv"], DEFAULT, PROBLEM, CHAINS, 3, TASK)
    assert [c["verifier_answer"] for c in mv["chains"]] == ["7", None, "6"]
    assert {role: (t["vote"], t["correct"]) for role, t in mv["turns"].items()} == {
        "generator": ("6", False), "verifier": ("6", False), "refiner": ("7", True)}
    one = method_record(METHODS["ma"], DEFAULT, PROBLEM, CHAINS, 3, TASK)
    assert {role: (t["vote"], t["correct"]) for role, t in one["turns"].items()} == {
        "generator": ("6", False), "verifier": ("7", True), "refiner": ("7", True)}
    assert "turns" not in method_record(METHODS["sa_mv"], DEFAULT, PROBLEM, CHAINS, 3, TASK)


def test_turn_votes_ignore_chain_order():
    first = method_record(METHODS["malt"], DEFAULT, PROBLEM, CHAINS, 3, TASK)["turns"]
    for order in itertools.permutations(CHAINS):
        assert method_record(METHODS["malt"], DEFAULT, PROBLEM, list(order), 3, TASK)["turns"] == first


def test_mean_and_std_over_seeds_and_a_seed_without_critique_answers():
    silent = [chain("7", None, "7"), chain("6", None, "6"), chain("7", None, "7")]
    records = {("ma_mv", 0): [method_record(METHODS["ma_mv"], DEFAULT, PROBLEM, CHAINS, 3, TASK)],
               ("ma_mv", 1): [method_record(METHODS["ma_mv"], DEFAULT, PROBLEM, silent, 3, TASK)]}
    res = build_results([METHODS["ma_mv"]], DEFAULT, records, [0, 1], 100, 0.95, 0)["methods"]["ma_mv"]
    assert res["per_seed"]["1"]["turnwise"] == {"generator": 1.0, "verifier": None, "refiner": 1.0}
    assert res["per_seed"]["0"]["verifier_answers"] == 2
    # Seed 1's critiques stated nothing: its vote after V had no answer, so it scores 0.
    assert res["turnwise"] == {"generator": {"mean": 0.5, "std": 0.707106781187},
                               "verifier": {"mean": 0.0, "std": 0.0},
                               "refiner": {"mean": 1.0, "std": 0.0}}
