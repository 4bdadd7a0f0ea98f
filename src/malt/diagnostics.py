"""Per-role credit diagnostics of a labelled forest: what the trees taught each role.

Accumulated tree by tree by `malt label` (into `label/summary.json`, `diagnostics`) and shown
by the report and the explorer. Per role of the chain:

- `values`: a 10-bin histogram of node values (the last bin holds 1.0) and the positive rate;
- `pairs_per_tree`: DPO pairs its siblings gave, per tree (mean, share of trees with none);
- `flips` (answering roles after the first): the answer it reviewed (its `answer` slot)
  against its own, right/wrong -> right/wrong: what refinement fixed and broke;
- `verdicts` (roles whose critique the task can read, `Task.critique_flags`): how often it
  called the reviewed answer wrong when it was wrong (TPR) and when it was right (FPR);
- `diversity` (answering roles): distinct answers among siblings of one parent; a sibling
  group with one distinct answer is `collapsed` (no contrast left for DPO).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from malt.chain import ANSWER, RoleChain
from malt.records import Node, Tree
from malt.tasks.base import Task

BINS = 10


class Diagnostics:
    """Counts over the trees added so far; `to_dict` gives the summary."""

    def __init__(self, chain: RoleChain, task: Task):
        self.chain, self.task = chain, task
        self.hist = {r.name: [0] * BINS for r in chain}
        self.positive = dict.fromkeys(chain.names, 0)
        self.nodes = dict.fromkeys(chain.names, 0)
        self.pairs: dict[str, list[int]] = {r.name: [] for r in chain if r.pairs}
        self.flips: dict[str, dict[str, int]] = {}
        self.verdicts: dict[str, dict[str, int]] = {}
        self.groups = defaultdict(int)  # (role, "groups" | "distinct" | "collapsed") -> n

    def add_tree(self, tree: Tree, pairs: list[tuple[Node, Node]]) -> None:
        """Count one labelled tree and the DPO pairs made from it."""
        by_id = {n.id: n for n in tree.nodes}
        siblings: dict[tuple[str, str | None], list[Node]] = defaultdict(list)
        for n in tree.nodes:
            siblings[(n.role, n.parent_id)].append(n)
            if n.value is not None:
                self.hist[n.role][min(BINS - 1, int(n.value * BINS))] += 1
            self.positive[n.role] += bool(n.label)
            self.nodes[n.role] += 1
            reviewed = self._reviewed(n, by_id)
            if reviewed is not None and reviewed.reward is not None:
                self._count(n, bool(reviewed.reward))
        for role in self.pairs:
            self.pairs[role].append(sum(1 for chosen, _ in pairs if chosen.role == role))
        for (role, _), group in siblings.items():
            if self.chain.role(role).answers:
                distinct = {n.answer for n in group}
                self.groups[(role, "groups")] += 1
                self.groups[(role, "distinct")] += len(distinct)
                self.groups[(role, "collapsed")] += len(group) > 1 and len(distinct) == 1

    def _reviewed(self, node: Node, by_id: dict[str, Node]) -> Node | None:
        """The node whose answer `node` saw in its `answer` slot (an ancestor), if any."""
        source = self.chain.role(node.role).source_of(ANSWER)
        parent = by_id.get(node.parent_id) if node.parent_id else None
        while parent is not None and parent.role != source:
            parent = by_id.get(parent.parent_id) if parent.parent_id else None
        return parent

    def _count(self, node: Node, was_right: bool) -> None:
        role = self.chain.role(node.role)
        if role.answers and node.reward is not None:
            key = f"{'right' if was_right else 'wrong'}->{'right' if node.reward else 'wrong'}"
            flips = self.flips.setdefault(role.name, dict.fromkeys(
                ("wrong->right", "right->wrong", "right->right", "wrong->wrong"), 0))
            flips[key] += 1
        elif not role.answers:
            flag = self.task.critique_flags(node.completion)
            if flag is None:
                return
            v = self.verdicts.setdefault(role.name, dict.fromkeys(
                ("flagged_wrong", "wrong", "flagged_right", "right"), 0))
            v["wrong" if not was_right else "right"] += 1
            if flag:
                v["flagged_wrong" if not was_right else "flagged_right"] += 1

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for r in self.chain:
            n = self.nodes[r.name]
            entry: dict[str, Any] = {
                "values": {"histogram": self.hist[r.name], "bins": BINS,
                           "positive_rate": round(self.positive[r.name] / n, 4) if n else None},
            }
            if r.name in self.pairs and self.pairs[r.name]:
                per_tree = self.pairs[r.name]
                entry["pairs_per_tree"] = {
                    "mean": round(sum(per_tree) / len(per_tree), 4),
                    "trees_without": sum(1 for p in per_tree if not p)}
            if r.name in self.flips:
                entry["flips"] = self.flips[r.name]
            if r.name in self.verdicts:
                v = self.verdicts[r.name]
                entry["verdicts"] = {
                    **v, "tpr": round(v["flagged_wrong"] / v["wrong"], 4) if v["wrong"] else None,
                    "fpr": round(v["flagged_right"] / v["right"], 4) if v["right"] else None}
            groups = self.groups[(r.name, "groups")]
            if groups:
                entry["diversity"] = {
                    "sibling_groups": groups,
                    "distinct_answers_mean": round(self.groups[(r.name, "distinct")] / groups, 4),
                    "collapsed": self.groups[(r.name, "collapsed")]}
            out[r.name] = entry
        return out
