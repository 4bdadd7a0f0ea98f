"""Credit assignment: grade the leaves, flow values back up the tree, label the nodes.

Value iteration as in MALT, over a chain of any depth: a leaf's value is its reward (1 if its
final answer is right); every other node's value is the mean of its children's values
("global" pooling: with full branching, the mean of all the leaves below it). "local"
pooling instead gives a node the fraction of its children that are positive (a majority
vote of its direct children; for nodes right above the leaves the two agree). A node is
positive when its value exceeds the threshold (strictly). With G -> V -> R: a refinement's
value is its reward, a critique's the mean of its refinements, a generator output's the mean
of its critiques' values.
"""

from __future__ import annotations

from collections import Counter

from malt.chain import DEFAULT, RoleChain
from malt.records import Node, Tree
from malt.tasks.base import Task
from malt.tasks.grading import read_answer

POOLINGS = ("global", "local")


def grade_tree(tree: Tree, task: Task, statuses: Counter[str] | None = None, *,
               chain: RoleChain = DEFAULT) -> Tree:
    """Extract answers from the nodes of answering roles and reward them 0/1 against the gold.

    Fills the nodes in place (a forest is labelled tree by tree, so copies would only cost
    time) and returns the same tree.
    Nodes of roles that state no answer (critiques) get no answer and no reward.
    Equivalence checks are cached per answer string, since siblings often agree.
    `statuses`, when given, counts each graded node's answer as ok, no_answer or unparseable.
    """
    gold = tree.problem.answer
    verdicts: dict[str, bool] = {}
    answering = {r.name for r in chain if r.answers}
    for n in tree.nodes:
        if n.role not in answering:
            n.answer, n.reward = None, None
            continue
        pred, status = read_answer(task, n.completion)
        if statuses is not None:
            statuses[status] += 1
        if pred is not None and pred not in verdicts:
            verdicts[pred] = task.is_equivalent(pred, gold)
        n.answer, n.reward = pred, int(pred is not None and verdicts[pred])
    return tree


def assign_values(tree: Tree, pooling: str = "global", threshold: float = 0.5) -> Tree:
    """Fill `value` and `label` in place on every node of a graded tree; returns it."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    children: dict[str, list[Node]] = {}
    for n in tree.nodes:
        if n.parent_id is not None:
            children.setdefault(n.parent_id, []).append(n)
    values: dict[str, float] = {}
    labels: dict[str, bool] = {}
    # Nodes are stored parents-first, so walking backwards visits children first.
    leaf_level = len(tree.branching.counts) - 1
    depth: dict[str, int] = {}
    for n in tree.nodes:
        depth[n.id] = 0 if n.parent_id is None else depth[n.parent_id] + 1
    for n in reversed(tree.nodes):
        if depth[n.id] == leaf_level:
            if n.reward is None:
                raise ValueError(f"leaf {n.id!r} has no reward: grade the tree first")
            value = float(n.reward)
        else:
            kids = children.get(n.id, [])
            if not kids:
                raise ValueError(f"{n.role} node {n.id!r} has no children")
            if pooling == "local":
                value = sum(labels[k.id] for k in kids) / len(kids)
            else:
                value = sum(values[k.id] for k in kids) / len(kids)
        values[n.id] = value
        labels[n.id] = value > threshold
    for n in tree.nodes:
        n.value, n.label = values[n.id], labels[n.id]
    return tree


def label_tree(tree: Tree, task: Task, pooling: str = "global", threshold: float = 0.5,
               statuses: Counter[str] | None = None, *, chain: RoleChain = DEFAULT) -> Tree:
    """Grade, then assign values and labels: the whole credit stage for one tree of `chain`
    (the paper's G -> V -> R by default)."""
    return assign_values(grade_tree(tree, task, statuses, chain=chain), pooling=pooling,
                         threshold=threshold)
