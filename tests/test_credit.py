"""Value iteration checked on hand-computed trees and by properties over random trees."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import TOY, make_tree
from malt.chain import GENERATOR, REFINER, VERIFIER
from malt.credit import assign_values, grade_tree, label_tree


def values(tree, role):
    return [n.value for n in tree.by_role(role)]


def labels(tree, role):
    return [n.label for n in tree.by_role(role)]


# 2 generator outputs x 3 critiques x 3 refinements, rewards chosen by hand.
HAND = [
    [[1, 1, 1], [1, 1, 0], [0, 0, 0]],  # V values 1, 2/3, 0   -> G value 5/9
    [[1, 0, 0], [0, 0, 0], [1, 0, 1]],  # V values 1/3, 0, 2/3 -> G value 1/3
]


def test_global_pooling_hand_computed():
    tree = label_tree(make_tree(HAND), TOY, pooling="global", threshold=0.5)
    assert [n.reward for n in tree.by_role(REFINER)] == [r for g in HAND for v in g for r in v]
    assert values(tree, VERIFIER) == pytest.approx([1, 2 / 3, 0, 1 / 3, 0, 2 / 3])
    assert values(tree, GENERATOR) == pytest.approx([5 / 9, 1 / 3])
    assert labels(tree, VERIFIER) == [True, True, False, False, False, True]
    assert labels(tree, GENERATOR) == [True, False]
    assert labels(tree, REFINER) == [bool(r) for g in HAND for v in g for r in v]


def test_local_pooling_counts_positive_children():
    tree = label_tree(make_tree(HAND), TOY, pooling="local", threshold=0.5)
    # V values are unchanged; G value = fraction of positive critiques.
    assert values(tree, VERIFIER) == pytest.approx([1, 2 / 3, 0, 1 / 3, 0, 2 / 3])
    assert values(tree, GENERATOR) == pytest.approx([2 / 3, 1 / 3])
    assert labels(tree, GENERATOR) == [True, False]


def test_local_and_global_pooling_can_disagree():
    # V values 1, 1/3, 1/3: global mean 5/9 > 0.5, but only one critique of three is positive.
    rewards = [[[1, 1, 1], [1, 0, 0], [0, 1, 0]]]
    g_global = label_tree(make_tree(rewards), TOY, "global").by_role(GENERATOR)[0]
    g_local = label_tree(make_tree(rewards), TOY, "local").by_role(GENERATOR)[0]
    assert (g_global.value, g_global.label) == (pytest.approx(5 / 9), True)
    assert (g_local.value, g_local.label) == (pytest.approx(1 / 3), False)


def test_threshold_is_strict():
    # V value exactly 0.5 (one of two refinements right) is not positive at threshold 0.5.
    tree = label_tree(make_tree([[[1, 0]]]), TOY, threshold=0.5)
    assert tree.by_role(VERIFIER)[0].value == 0.5
    assert tree.by_role(VERIFIER)[0].label is False
    assert label_tree(make_tree([[[1, 0]]]), TOY, threshold=0.49).by_role(VERIFIER)[0].label


def test_unequal_branching():
    tree = label_tree(make_tree([[[1, 0, 0, 0, 1]] * 2] * 4), TOY)
    assert len(tree.by_role(REFINER)) == 4 * 2 * 5
    assert values(tree, GENERATOR) == pytest.approx([0.4] * 4)


def test_grade_tree_extracts_answers_and_ignores_critiques():
    tree = grade_tree(make_tree(HAND, gold="7"), TOY)
    assert {n.answer for n in tree.by_role(REFINER)} == {"7", "0"}
    assert all(n.reward is None and n.answer is None for n in tree.by_role(VERIFIER))
    assert [n.reward for n in tree.by_role(GENERATOR)] == [0, 0]


def test_unextractable_answer_grades_zero():
    tree = make_tree([[[1, 1]]])
    tree.nodes[-1].completion = "I am not sure."
    graded = grade_tree(tree, TOY)
    assert [n.reward for n in graded.by_role(REFINER)] == [1, 0]


def test_assign_values_needs_rewards():
    with pytest.raises(ValueError, match="grade the tree first"):
        assign_values(make_tree(HAND))


trees = st.integers(1, 3).flatmap(
    lambda ng: st.integers(1, 3).flatmap(
        lambda nv: st.integers(1, 4).flatmap(
            lambda nr: st.lists(
                st.lists(st.lists(st.integers(0, 1), min_size=nr, max_size=nr),
                         min_size=nv, max_size=nv),
                min_size=ng, max_size=ng,
            )
        )
    )
)


@settings(max_examples=150, deadline=None)
@given(rewards=trees, threshold=st.sampled_from([0.0, 0.25, 0.5, 0.75]))
def test_global_values_are_leaf_means_and_labels_monotone(rewards, threshold):
    tree = label_tree(make_tree(rewards), TOY, "global", threshold)
    for node in tree.nodes:
        assert 0.0 <= node.value <= 1.0
        assert node.label == (node.value > threshold)
    for g, gnode in zip(rewards, tree.by_role(GENERATOR), strict=True):
        leaves = [r for v in g for r in v]
        assert gnode.value == pytest.approx(sum(leaves) / len(leaves))
    # Labels are monotone in value: a node valued at least as high as a positive is positive.
    for a in tree.nodes:
        for b in tree.nodes:
            if a.label and b.value >= a.value:
                assert b.label


@settings(max_examples=100, deadline=None)
@given(rewards=trees)
def test_local_values_in_unit_interval(rewards):
    tree = label_tree(make_tree(rewards), TOY, "local")
    assert all(0.0 <= n.value <= 1.0 for n in tree.nodes)


def test_grading_counts_why_answers_earned_nothing():
    from collections import Counter

    from malt.records import Branching, Problem
    from malt.synthetic import synthetic_forest
    from malt.tasks import get_task

    problems = [Problem(id=f"gsm8k-c{i}", question=f"{i} + 1?", answer=str(i + 1), task="gsm8k")
                for i in range(4)]
    trees = list(synthetic_forest(problems, Branching(2, 2, 2), seed=0))
    leaves = [n for t in trees for n in t.by_role(REFINER)]
    leaves[0].completion = "I am not sure."
    leaves[1].completion = "Final Answer: " + "9" * 5000
    leaves[2].completion = "Final Answer: \\frac{3}{4}"
    statuses = Counter()
    for tree in trees:
        label_tree(tree, get_task("gsm8k"), statuses=statuses)
    graded = sum(len(t.by_role(GENERATOR)) + len(t.by_role(REFINER)) for t in trees)
    assert statuses == {"ok": graded - 2, "no_answer": 1, "unparseable": 1}
    assert [(n.answer, n.reward) for n in leaves[:3]] == [(None, 0), (None, 0), ("0.75", 0)]
