"""The role chain: building and checking it, and every layer driven by it at depth five."""

from __future__ import annotations

import doctest

import pytest

from malt.backends.base import SamplingParams
from malt.chain import DEFAULT, ChainError, build_chain
from malt.credit import label_tree
from malt.evaluate.methods import BUILTIN, groups
from malt.records import Branching, Node, Problem, Tree, child_id
from malt.roledata import RoleStats, pair_roles, preference_pairs
from malt.sampling import sample_trees
from toy_task import TASK as TOY
from toy_task import FakeBackend

FIVE = build_chain(["generator", "verifier", "refiner",
                    {"name": "verifier2", "template": "verifier", "model": "verifier"},
                    {"name": "refiner2", "template": "refiner"}])


@pytest.mark.parametrize("module", ["malt.chain", "malt.records", "malt.sampling",
                                    "malt.evaluate.store", "malt.configfile"])
def test_doctests(module):
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0


def test_the_default_chain_is_the_papers():
    assert DEFAULT.names == ("generator", "verifier", "refiner") and DEFAULT.describe() == "G -> V -> R"
    g, v, r = DEFAULT
    assert (g.answers, v.answers, r.answers) == (True, False, True)
    assert (g.pairs, v.pairs, r.pairs) == (False, True, True)  # paper: no generator DPO
    assert v.sees == (("answer", "generator"),)
    assert r.sees == (("answer", "generator"), ("critique", "verifier"))


def test_a_longer_chain_reviews_the_latest_answer_and_may_share_a_model():
    v2, r2 = FIVE.roles[3:]
    assert FIVE.describe() == "G -> V -> R -> V2 -> R2"
    assert v2.sees == (("answer", "refiner"),) and v2.model == "verifier"
    assert r2.sees == (("answer", "refiner"), ("critique", "verifier2"))
    assert FIVE.models == ("generator", "verifier", "refiner", "refiner2")
    assert [r.name for r in FIVE.using("verifier")] == ["verifier", "verifier2"]


@pytest.mark.parametrize(("entries", "message"), [
    ([], "chain: needs at least one role"),
    (["generator", "generator"], r"chain\[1\].name: role 'generator' appears twice"),
    (["generator", "critic"], r"chain\[1\].template: 'critic' is not a template kind"),
    (["generator", "verifier"], "the last role .verifier. must state an answer"),
    (["generator", {"name": "v", "template": "verifier", "sees": {"answer": "refiner"}},
      "refiner"], r"chain\[1\].sees.answer: 'refiner' is not an earlier role"),
    (["generator", {"name": "v", "template": "verifier", "sees": {"critique": "generator"}},
      "refiner"], r"the verifier template has no slot 'critique'"),
    (["generator", {"name": "x", "template": "refiner", "letter": "g"}],
     r"chain\[1\].letter: 'g' must be"),
    (["generator", {"name": "x", "template": "refiner", "colour": "red"}],
     r"chain\[1\].colour: unknown field"),
])
def test_a_bad_chain_is_one_sentence_naming_the_entry(entries, message):
    with pytest.raises(ChainError, match=message):
        build_chain(entries)


def _five_role_tree(rewards: list[list[list[int]]]) -> Tree:
    """G -> V -> R -> V2 -> R2 with branching 2x1x2x1x2; leaf (g, r, r2) right iff
    rewards[g][r][r2]. Every answering node states an answer; only the leaves' count."""
    p = Problem(id="t", question="q?", answer="7", task="toy")
    nodes: list[Node] = []

    def add(parent: str | None, letter: str, i: int, role: str, text: str) -> str:
        nid = child_id(parent or "t", letter, i)
        nodes.append(Node(nid, role, parent, TOY.messages("generator", p), text))
        return nid

    for g, by_r in enumerate(rewards):
        gid = add(None, "g", g, "generator", "ANSWER: 0")
        vid = add(gid, "v", 0, "verifier", "crit")
        for r, by_r2 in enumerate(by_r):
            rid = add(vid, "r", r, "refiner", "ANSWER: 0")
            v2 = add(rid, "v2", 0, "verifier2", "crit")
            for k, ok in enumerate(by_r2):
                add(v2, "r2", k, "refiner2", f"ANSWER: {7 if ok else 0}")
    return Tree(p, Branching(2, 1, 2, 1, 2, letters=["g", "v", "r", "v2", "r2"]), nodes)


def test_value_iteration_at_depth_five_matches_hand_computed_values():
    rewards = [[[1, 1], [1, 0]], [[0, 0], [0, 1]]]
    tree = label_tree(_five_role_tree(rewards), TOY, chain=FIVE)
    value = {n.id: n.value for n in tree.nodes}
    # Global pooling: every node is the mean of its children, so of the leaves below it.
    assert value["t/g0/v0/r0/v20"] == 1.0 and value["t/g0/v0/r1/v20"] == 0.5
    assert value["t/g0/v0/r0"] == 1.0 and value["t/g0/v0/r1"] == 0.5
    assert value["t/g0/v0"] == value["t/g0"] == 0.75
    assert value["t/g1/v0"] == value["t/g1"] == 0.25
    label = {n.id: n.label for n in tree.nodes}
    assert label["t/g0"] and not label["t/g1"] and not label["t/g0/v0/r1"]
    # The non-leaf refiners state an answer (graded) but their value comes from below.
    assert {n.reward for n in tree.by_role("refiner")} == {0}
    assert [n.reward for n in tree.by_role("verifier2")] == [None] * 4
    # Local pooling: each node is the share of its children that are positive.
    local = {n.id: n.value for n in label_tree(_five_role_tree(rewards), TOY, "local",
                                               chain=FIVE).nodes}
    assert local["t/g0/v0/r0/v20"] == 1.0 and local["t/g0/v0/r1/v20"] == 0.5
    assert local["t/g0/v0/r0"] == 1.0 and local["t/g0/v0/r1"] == 0.0  # 0.5 is not > 0.5
    assert local["t/g0/v0"] == 0.5 and local["t/g0"] == 0.0
    assert local["t/g1/v0"] == 0.0 and local["t/g1"] == 0.0


def test_role_data_of_a_shared_model_slot_and_pairs_per_role():
    tree = label_tree(_five_role_tree([[[1, 1], [1, 0]], [[0, 0], [0, 1]]]), TOY, chain=FIVE)
    assert pair_roles(FIVE) == ("verifier", "refiner", "verifier2", "refiner2")
    pairs = list(preference_pairs(tree, roles=pair_roles(FIVE)))
    # Siblings with one parent: refiners under each V (r0 positive, r1 not, for g0), and the
    # refiner2 leaves under each V2 whose two leaves differ.
    assert {(c.role, c.parent_id) for c, _ in pairs} == {
        ("refiner", "t/g0/v0"), ("refiner2", "t/g0/v0/r1/v20"), ("refiner2", "t/g1/v0/r1/v20")}
    stats = RoleStats(FIVE)
    stats.add_tree(tree)
    assert list(stats.positives) == list(FIVE.names)
    assert list(stats.sft_rows) == ["generator", "verifier", "refiner", "refiner2"]


def test_the_sampler_runs_any_chain_one_call_per_role(gen_task):
    problems = [gen_task.parse_row({"question": "What is 1 + 2?", "answer": "3"}, "x")]
    backend = FakeBackend()
    n = {"generator": 2, "verifier": 1, "refiner": 2, "verifier2": 1, "refiner2": 1}
    sampling = {k: SamplingParams(n=v) for k, v in n.items()}
    (tree,), stats = sample_trees(gen_task, problems, backend, sampling, 3, chain=FIVE)
    assert backend.calls == [("generator", 1), ("verifier", 2), ("refiner", 2),
                             ("verifier2", 4), ("refiner2", 4)]
    assert tree.branching.to_dict() == {"n_g": 2, "n_v": 1, "n_r": 2, "n_v2": 1, "n_r2": 1}
    assert stats.generations == {"generator": 2, "verifier": 2, "refiner": 4, "verifier2": 4,
                                 "refiner2": 4}
    by_id = {node.id: node for node in tree.nodes}
    leaf = by_id["toy-" + problems[0].id.split("-", 1)[1] + "/g1/v0/r1/v20/r20"]
    v2, r1 = by_id[leaf.parent_id], by_id[by_id[leaf.parent_id].parent_id]
    # V2 reviews R1's answer; R2 reads R1's answer and V2's critique.
    assert r1.completion in v2.prompt[1]["content"]
    assert r1.completion in leaf.prompt[1]["content"] and v2.completion in leaf.prompt[1]["content"]
    # Only answering roles' nodes carry an extracted answer.
    assert {n.role for n in tree.nodes if n.answer is not None} == {"generator", "refiner",
                                                                   "refiner2"}


def test_methods_share_chains_when_one_runs_a_prefix_of_another():
    names = ["sa", "ma", "star_sa_mv", "star_ma_mv", "malt", "malt_g", "malt_gv", "malt_gr",
             "malt_base_generator"]
    plan = groups([BUILTIN[n] for n in names], DEFAULT)
    assert [(g.key, [m.name for m in g.methods]) for g in plan] == [
        ("base", ["sa", "ma"]), ("sft", ["star_sa_mv", "star_ma_mv"]),
        ("final", ["malt", "malt_g", "malt_gv"]), ("g.final-r.final", ["malt_gr"]),
        ("g.base-v.final-r.final", ["malt_base_generator"])]
    gr = next(g for g in plan if g.key == "g.final-r.final")
    # G -> R: the refiner runs without a critique (its slot shows the task's `absent` text).
    assert gr.chain.roles[1].sees == (("answer", "generator"),)
