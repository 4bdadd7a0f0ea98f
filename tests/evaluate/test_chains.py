"""Chains run level by level, with batching-independent seeds."""

import doctest

from fakes import TOY, FakeBackend, toy_rows

import malt.evaluate.chains as chains_mod
from malt.backends.base import SamplingParams
from malt.evaluate.chains import Chain, run_chains


def problems(n, start=0):
    return [TOY.parse_row(r, f"row {i}") for i, r in enumerate(toy_rows(n, start))]


def test_doctests():
    assert doctest.testmod(chains_mod).failed == 0


def test_multi_agent_is_three_batched_calls():
    backend = FakeBackend()
    out = run_chains(backend, TOY, problems(4), k=3, multi_agent=True,
                     params=SamplingParams(temperature=0.7), seed=0)
    # One call per level: G with n=k, then one V and one R prompt per chain.
    assert backend.calls == [("generator", 4, 3), ("verifier", 12, 1), ("refiner", 12, 1)]
    assert [len(cs) for cs in out] == [3, 3, 3, 3]
    for cs in out:
        for c in cs:
            assert c.verifier.startswith("Critique") and c.refiner is not None
            assert c.answer == c.refiner_answer == TOY.extract_answer(c.refiner)
            assert c.generator_answer == TOY.extract_answer(c.generator)
            assert c.finish_reasons == ("stop", "stop", "stop")


def test_single_agent_stops_after_the_generator():
    backend = FakeBackend()
    out = run_chains(backend, TOY, problems(2), k=1, multi_agent=False,
                     params=SamplingParams(), seed=0)
    assert backend.calls == [("generator", 2, 1)]
    assert out[0][0].verifier is None and out[0][0].answer == out[0][0].generator_answer


def test_results_do_not_depend_on_the_other_questions():
    full = run_chains(FakeBackend(), TOY, problems(6), 3, True, SamplingParams(), seed=4)
    part = run_chains(FakeBackend(), TOY, problems(3, start=3), 3, True, SamplingParams(), seed=4)
    assert full[3:] == part
    other = run_chains(FakeBackend(), TOY, problems(6), 3, True, SamplingParams(), seed=5)
    assert other != full


def test_chain_round_trips_through_a_dict():
    c = Chain("g", "1", "v", "r", None, ("stop", "length", "stop"))
    assert Chain.from_dict(c.to_dict()) == c and c.answer is None
