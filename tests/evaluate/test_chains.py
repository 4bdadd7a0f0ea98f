"""Chains are the tree sampler with branching k x 1 x 1: batched per role, seeds per node."""

import doctest

from fakes import TOY, FakeBackend, toy_rows

import malt.evaluate.chains as chains_mod
from malt.backends.base import SamplingParams
from malt.chain import DEFAULT
from malt.evaluate.chains import Chain, Step, run_chains
from malt.sampling import sample_trees


def problems(n, start=0):
    return [TOY.parse_row(r, f"row {i}") for i, r in enumerate(toy_rows(n, start))]


def test_doctests():
    assert doctest.testmod(chains_mod).failed == 0


def test_multi_agent_is_one_batched_call_per_role():
    backend = FakeBackend()
    out = run_chains(backend, TOY, problems(4), DEFAULT, k=3,
                     params=SamplingParams(temperature=0.7), seed=0)
    # One call per level: G with n=k, then one V and one R prompt per chain.
    assert backend.calls == [("generator", 4, 3), ("verifier", 12, 1), ("refiner", 12, 1)]
    assert [len(cs) for cs in out] == [3, 3, 3, 3]
    for cs in out:
        for c in cs:
            g, v, r = c.steps
            assert c.roles == ("generator", "verifier", "refiner")
            assert v.text.startswith("Critique") and v.answer is None
            assert c.answer == r.answer == TOY.extract_answer(r.text)
            assert g.answer == TOY.extract_answer(g.text)
            assert [s.finish_reason for s in c.steps] == ["stop", "stop", "stop"]


def test_chains_are_the_tree_sampler_with_branching_k_1_1():
    params = SamplingParams(temperature=0.7)
    chains = run_chains(FakeBackend(), TOY, problems(3), DEFAULT, 3, params, seed=5)
    sampling = {"generator": SamplingParams(n=3, temperature=0.7),
                "verifier": SamplingParams(n=1, temperature=0.7),
                "refiner": SamplingParams(n=1, temperature=0.7)}
    trees, _ = sample_trees(TOY, problems(3), FakeBackend(), sampling, 5)
    for tree, cs in zip(trees, chains, strict=True):
        texts = [n.completion for n in tree.nodes]
        assert [s.text for s in cs[1].steps] == [texts[1], texts[4], texts[7]]


def test_single_agent_stops_after_the_generator():
    backend = FakeBackend()
    out = run_chains(backend, TOY, problems(2), DEFAULT.prefix(1), k=1,
                     params=SamplingParams(), seed=0)
    assert backend.calls == [("generator", 2, 1)]
    assert out[0][0].roles == ("generator",) and out[0][0].answer == out[0][0].steps[0].answer


def test_results_do_not_depend_on_the_other_questions():
    full = run_chains(FakeBackend(), TOY, problems(6), DEFAULT, 3, SamplingParams(), seed=4)
    part = run_chains(FakeBackend(), TOY, problems(3, start=3), DEFAULT, 3, SamplingParams(),
                      seed=4)
    assert full[3:] == part
    other = run_chains(FakeBackend(), TOY, problems(6), DEFAULT, 3, SamplingParams(), seed=5)
    assert other != full


def test_chain_round_trips_through_a_dict():
    c = Chain((Step("generator", "g", "1", "stop"), Step("verifier", "v", None, "length"),
               Step("refiner", "r", None, "stop")))
    assert Chain.from_dict(c.to_dict()) == c and c.answer is None
