"""SFT rows and DPO pairs from hand-labelled trees, in TRL's conversational formats."""

from __future__ import annotations

from conftest import TOY, make_tree
from malt.chain import GENERATOR, REFINER, VERIFIER
from malt.credit import label_tree
from malt.roledata import RoleStats, dpo_row, preference_pairs, sft_nodes, sft_row

HAND = [
    [[1, 1, 1], [1, 1, 0], [0, 0, 0]],  # V: +, +, -   G: + (5/9)
    [[1, 0, 0], [0, 0, 0], [1, 0, 1]],  # V: -, -, +   G: - (1/3)
]


def labelled(rewards=HAND):
    return label_tree(make_tree(rewards), TOY)


def test_sft_nodes_are_the_positives_of_each_role():
    tree = labelled()
    pos = list(sft_nodes(tree))
    assert [n.id for n in pos if n.role == GENERATOR] == ["toy-1/g0"]
    assert [n.id for n in pos if n.role == VERIFIER] == ["toy-1/g0/v0", "toy-1/g0/v1", "toy-1/g1/v2"]
    assert len([n for n in pos if n.role == REFINER]) == sum(r for g in HAND for v in g for r in v)


def test_sft_row_format_is_trl_conversational():
    node = labelled().nodes[0]
    row = sft_row(node)
    assert set(row) == {"prompt", "completion"}
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["completion"] == [{"role": "assistant", "content": node.completion}]


def test_verifier_pairs_are_siblings_under_one_generator_output():
    tree = labelled()
    pairs = list(preference_pairs(tree, roles=(VERIFIER,)))
    # g0: 2 positive x 1 negative critique; g1: 1 positive x 2 negative.
    assert len(pairs) == 4
    for chosen, rejected in pairs:
        assert chosen.parent_id == rejected.parent_id
        assert chosen.label and not rejected.label
        assert chosen.prompt == rejected.prompt


def test_refiner_pairs_correct_vs_incorrect_under_one_critique():
    pairs = list(preference_pairs(labelled(), roles=(REFINER,)))
    # Critiques with mixed leaves: g0/v1 (2x1), g1/v0 (1x2), g1/v2 (2x1) -> 6 pairs.
    assert len(pairs) == 6
    assert all(c.reward == 1 and r.reward == 0 for c, r in pairs)
    assert all(c.parent_id == r.parent_id for c, r in pairs)


def test_generator_pairs_only_when_asked():
    tree = labelled()
    assert not [p for p in preference_pairs(tree) if p[0].role == GENERATOR]
    g_pairs = list(preference_pairs(tree, roles=(GENERATOR,)))
    assert [(c.id, r.id) for c, r in g_pairs] == [("toy-1/g0", "toy-1/g1")]


def test_max_pairs_per_parent_is_deterministic_subset():
    tree = labelled([[[1, 1, 1, 0, 0, 0]]])  # 9 refiner pairs under one critique
    all_pairs = [(c.id, r.id) for c, r in preference_pairs(tree, roles=(REFINER,))]
    a = [(c.id, r.id) for c, r in preference_pairs(tree, 4, seed=1, roles=(REFINER,))]
    b = [(c.id, r.id) for c, r in preference_pairs(tree, 4, seed=1, roles=(REFINER,))]
    c = [(c.id, r.id) for c, r in preference_pairs(tree, 4, seed=2, roles=(REFINER,))]
    assert len(all_pairs) == 9 and len(a) == 4
    assert a == b and set(a) <= set(all_pairs)
    assert a != c  # another seed picks another subset (fixed seeds: checked once by hand)


def test_no_pairs_when_all_siblings_agree():
    tree = labelled([[[1, 1], [1, 1]]])
    assert list(preference_pairs(tree)) == []


def test_dpo_row_format():
    tree = labelled()
    chosen, rejected = next(preference_pairs(tree, roles=(REFINER,)))
    row = dpo_row(chosen, rejected)
    assert set(row) == {"prompt", "chosen", "rejected"}
    assert row["chosen"][0] == {"role": "assistant", "content": chosen.completion}
    assert row["rejected"][0]["content"] == rejected.completion


def test_role_stats_counts():
    stats = RoleStats()
    stats.add_tree(labelled())
    stats.add_tree(labelled([[[1, 1], [1, 1]]]))
    d = stats.to_dict()
    assert d["trees"] == 2 and d["leaves"] == 18 + 4
    assert d["leaf_accuracy"] == round(12 / 22, 6)
    assert d["trees_all_correct"] == 1 and d["trees_all_wrong"] == 0
    assert d["positives"]["verifier"] == 3 + 2
