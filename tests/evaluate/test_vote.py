"""Majority vote: equivalence classes, None handling, documented tie-break, order invariance."""

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

import malt.evaluate.vote as vote_mod
from malt.evaluate.vote import equivalence_classes, majority_vote
from malt.tasks import get_task


def numeric(a: str, b: str) -> bool:
    return float(a) == float(b)


def test_doctests():
    assert doctest.testmod(vote_mod).failed == 0


def test_equivalent_spellings_pool_their_votes():
    # "0.5" and "1/2" are one answer to the task: together they outvote "3" and "4".
    frac = {"1/2": 0.5, "0.5": 0.5, "3": 3.0, "4": 4.0}
    v = majority_vote(["3", "0.5", "1/2", "4"], lambda a, b: frac[a] == frac[b])
    assert v.answer == "0.5" and v.votes == 2 and v.supporters == (1, 2) and v.num_classes == 3


def test_none_never_beats_a_real_answer():
    v = majority_vote([None, None, "12"], numeric)
    assert v.answer == "12" and v.votes == 1 and v.supporters == (2,)
    assert majority_vote([None] * 3, numeric).answer is None


def test_tie_goes_to_smallest_representative_string():
    assert majority_vote(["9", "10", "9.0", "10.0"], numeric).answer == "10"
    assert majority_vote(["b", "a"], lambda x, y: x == y).answer == "a"


def test_asymmetric_checker_is_used_both_ways():
    # A checker that only accepts (pred="2.0", gold="2") still joins the two.
    one_way = lambda a, b: (a, b) == ("2.0", "2")  # noqa: E731
    assert equivalence_classes(["2", "2.0"], one_way) == [[0, 1]]


def test_non_transitive_checker_gives_connected_components():
    # a~b and b~c but not a~c: one class whatever the order.
    pairs = {frozenset("ab"), frozenset("bc")}
    near = lambda x, y: frozenset((x, y)) in pairs  # noqa: E731
    assert equivalence_classes(["a", "c", "b"], near) == [[0, 1, 2]]
    assert majority_vote(["a", "c", "b", "d", "d"], near).answer == "a"


answers = st.lists(
    st.one_of(st.none(), st.sampled_from(["1", "1.0", "2", "02", "3", "-3", "10"])),
    min_size=1, max_size=7,
)


@given(answers, st.randoms(use_true_random=False))
def test_vote_ignores_chain_order(values, rnd):
    shuffled = list(values)
    rnd.shuffle(shuffled)
    a, b = majority_vote(values, numeric), majority_vote(shuffled, numeric)
    assert (a.answer, a.votes, a.num_classes) == (b.answer, b.votes, b.num_classes)


@given(answers)
def test_winner_has_the_largest_class(values):
    v = majority_vote(values, numeric)
    real = [x for x in values if x is not None]
    if not real:
        assert v.answer is None and v.votes == 0
        return
    best = max(sum(numeric(x, y) for y in real) for x in real)
    assert v.votes == best
    assert v.votes == sum(numeric(v.answer, y) for y in real)


@pytest.mark.parametrize("task_name, answers, winner, votes", [
    ("gsm8k", ["1,200", "1200.00", "$1200", "12"], "1,200", 3),
    ("math", [r"\frac{1}{2}", "0.5", r"\dfrac12", "2"], "0.5", 3),
    ("csqa", ["B", "b", "C", None], "B", 2),
])
def test_votes_use_the_task_equivalence(task_name, answers, winner, votes):
    task = get_task(task_name)
    v = majority_vote(answers, task.is_equivalent)
    assert task.is_equivalent(v.answer, winner) and v.votes == votes
