"""Per-role credit diagnostics on hand-built trees with known answers and verdicts."""

from __future__ import annotations

import dataclasses

from malt.chain import DEFAULT
from malt.credit import label_tree
from malt.diagnostics import Diagnostics
from malt.evaluate.render import diagnostics_markdown
from malt.records import Branching, Node, Problem, Tree, child_id
from malt.roledata import pair_roles, preference_pairs
from toy_task import TASK as TOY

# A verifier whose critique says "WRONG" or "RIGHT" (the toy task reads that verdict).
TASK = dataclasses.replace(
    TOY, critique_flags_fn=lambda t: True if "WRONG" in t else False if "RIGHT" in t else None)


def tree(g_answers: list[int], verdicts: list[list[str]], r_answers: list[list[list[int]]]
         ) -> Tree:
    """G outputs with these answers (gold 7); per G, critiques; per critique, refinements."""
    p = Problem(id="t", question="q?", answer="7", task="toy")
    msg = TOY.messages("generator", p)
    nodes = []
    for g, ga in enumerate(g_answers):
        gid = child_id("t", "g", g)
        nodes.append(Node(gid, "generator", None, msg, f"ANSWER: {ga}"))
        for v, verdict in enumerate(verdicts[g]):
            vid = child_id(gid, "v", v)
            nodes.append(Node(vid, "verifier", gid, msg, verdict))
            for r, ra in enumerate(r_answers[g][v]):
                nodes.append(Node(child_id(vid, "r", r), "refiner", vid, msg, f"ANSWER: {ra}"))
    return Tree(p, Branching(len(g_answers), len(verdicts[0]), len(r_answers[0][0])), nodes)


def diagnose(*trees: Tree) -> dict:
    d = Diagnostics(DEFAULT, TASK)
    for t in trees:
        t = label_tree(t, TASK)
        d.add_tree(t, list(preference_pairs(t, roles=pair_roles(DEFAULT))))
    return d.to_dict()


def test_flips_verdicts_diversity_and_values():
    # G0 is wrong (3): V0 says WRONG, V1 says RIGHT. G1 is right (7): V0 says WRONG, V1 "hm".
    t = tree([3, 7], [["WRONG", "RIGHT"], ["WRONG", "hm"]],
             [[[7, 7], [3, 3]], [[7, 3], [7, 7]]])
    out = diagnose(t)
    r, v, g = out["refiner"], out["verifier"], out["generator"]
    # Refiners against the G answer they reviewed: wrong->right 2, wrong->wrong 2,
    # right->right 3, right->wrong 1.
    assert r["flips"] == {"wrong->right": 2, "right->wrong": 1, "right->right": 3,
                          "wrong->wrong": 2}
    # Verdicts on G's answer: of 2 critiques of the wrong G, 1 flagged it; of the right G's,
    # one flagged it wrong and one stated no verdict (not counted).
    assert v["verdicts"] == {"flagged_wrong": 1, "wrong": 2, "flagged_right": 1, "right": 1,
                             "tpr": 0.5, "fpr": 1.0}
    assert "flips" not in v and "verdicts" not in g
    # Siblings' distinct answers: the G pair differ; refiner groups: {7}, {3}, {7, 3}, {7}.
    assert g["diversity"] == {"sibling_groups": 1, "distinct_answers_mean": 2.0, "collapsed": 0}
    assert r["diversity"] == {"sibling_groups": 4, "distinct_answers_mean": 1.25, "collapsed": 3}
    # Values: critique values 1.0, 0.0, 0.5, 1.0; G values 0.5 and 0.75.
    assert v["values"]["histogram"] == [1, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    assert g["values"]["histogram"][5] == 1 and g["values"]["histogram"][7] == 1
    assert g["values"]["positive_rate"] == 0.5
    # Pairs: verifiers under G0 (1.0 vs 0.0) and under G1 (1.0 vs 0.5); refiners under G1/V0.
    assert v["pairs_per_tree"] == {"mean": 2.0, "trees_without": 0}
    assert r["pairs_per_tree"] == {"mean": 1.0, "trees_without": 0}
    assert "pairs_per_tree" not in g  # the paper's chain builds no generator pairs


def test_the_report_renders_a_row_per_role():
    text = diagnostics_markdown({"diagnostics": diagnose(tree([3, 7], [["WRONG", "RIGHT"]] * 2,
                                                             [[[7, 3], [3, 3]]] * 2))})
    rows = [line for line in text.splitlines() if line.startswith("| ") and "role" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| generator", "| verifier", "| refiner"]
    assert "0.50 / 0.50" in rows[1]  # each G got one WRONG and one RIGHT: TPR 0.5, FPR 0.5
