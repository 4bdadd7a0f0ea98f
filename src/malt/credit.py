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
from collections.abc import Sequence
from typing import Any

from malt.chain import DEFAULT, RoleChain
from malt.records import Node, Tree
from malt.tasks.base import Task
from malt.tasks.grading import read_answer

POOLINGS = ("global", "local")


Grades = list[tuple[str | None, int | None]]  # (answer, reward) of each node, in tree order


def grade_tree(tree: Tree, task: Task, statuses: Counter[str] | None = None, *,
               chain: RoleChain = DEFAULT) -> Tree:
    """Extract answers from the nodes of answering roles and reward them 0/1 against the gold.

    Fills the nodes in place (a forest is labelled tree by tree, so copies would only cost
    time) and returns the same tree.
    Nodes of roles that state no answer (critiques) get no answer and no reward.
    `statuses`, when given, counts each graded node's answer as ok, no_answer or unparseable.
    """
    grades = grade_outputs([(n.role, n.completion) for n in tree.nodes], tree.problem.answer,
                           task, statuses, chain=chain)
    return set_grades(tree, grades)


def grade_outputs(outputs: Sequence[tuple[str, Any]], gold: str, task: Task,
                  statuses: Counter[str] | None = None, *, chain: RoleChain = DEFAULT) -> Grades:
    """`grade_tree` on a tree's (role, completion) pairs, in order: (answer, reward) of each.

    Readings are cached per completion and equivalence checks per answer string, since
    siblings often write the same text and agree.
    """
    verdicts: dict[str, bool] = {}
    readings: dict[str, tuple[str | None, str]] = {}
    answering = {r.name for r in chain if r.answers}
    grades: Grades = []
    for role, text in outputs:
        if role not in answering:
            grades.append((None, None))
            continue
        if not isinstance(text, str):  # no key for the cache; read_answer says unparseable
            pred, status = read_answer(task, text)
        elif (reading := readings.get(text)) is not None:
            pred, status = reading
        else:
            pred, status = readings[text] = read_answer(task, text)
        if statuses is not None:
            statuses[status] += 1
        if pred is not None and pred not in verdicts:
            verdicts[pred] = task.is_equivalent(pred, gold)
        grades.append((pred, int(pred is not None and verdicts[pred])))
    return grades


def set_grades(tree: Tree, grades: Grades) -> Tree:
    """Fill each node's answer and reward from `grades` (in tree order); returns the tree."""
    for n, (answer, reward) in zip(tree.nodes, grades, strict=True):
        n.answer, n.reward = answer, reward
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
