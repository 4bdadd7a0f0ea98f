"""Typed records shared by every stage: problems, tree nodes and trees.

A tree holds one problem and the outputs of its role chain (`malt.chain`) in a flat list,
parents before children, one level per role. Node ids are derived from the problem id and
the node's path (each role's letter and the sample index), so reruns, resumes and later
stages always line up. With the default G -> V -> R chain:

    <problem_id>/g1            generator output 1
    <problem_id>/g1/v0         verifier critique 0 of that output
    <problem_id>/g1/v0/r2      refinement 2 of that critique
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from operator import itemgetter
from typing import Any

from malt.errors import MaltError

SCHEMA_VERSION = 1

Message = dict[str, str]
Messages = list[Message]


@dataclass(frozen=True)
class Problem:
    """One question with its gold final answer (already normalised by the task)."""

    id: str
    question: str
    answer: str
    task: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Node:
    """One agent output in the tree; `reward`, `value` and `label` are filled by credit."""

    id: str
    role: str
    parent_id: str | None
    prompt: Messages
    completion: str
    answer: str | None = None
    reward: int | None = None
    value: float | None = None
    label: bool | None = None
    num_tokens: int | None = None
    finish_reason: str | None = None
    # Tokens of the prompt it answered (shared by its siblings), where the backend reports
    # them; written only when known, so trees from backends that do not report them keep
    # their layout.
    prompt_tokens: int | None = None


class Branching:
    """Children per parent at each level of a tree, with each level's id letter.

    `Branching(3, 3, 3)` is the paper's G -> V -> R tree (27 leaves); other chains name
    their letters (`Branching(3, 1, 1, 1, 1, letters="g v r v2 r2".split())`).

    >>> b = Branching(3, 2, 3)
    >>> b.leaves, b.nodes, b.to_dict()
    (18, 27, {'n_g': 3, 'n_v': 2, 'n_r': 3})
    >>> Branching.from_dict(b.to_dict()) == b
    True
    """

    __slots__ = ("counts", "letters")

    def __init__(self, *counts: int, letters: Sequence[str] = ("g", "v", "r")):
        if len(counts) != len(letters):
            raise ValueError(f"branching has {len(counts)} counts for {len(letters)} levels")
        self.counts: tuple[int, ...] = tuple(counts)
        self.letters: tuple[str, ...] = tuple(letters)

    @property
    def leaves(self) -> int:
        return math.prod(self.counts)

    @property
    def nodes(self) -> int:
        return sum(math.prod(self.counts[:k + 1]) for k in range(len(self.counts)))

    def at_level(self, k: int) -> int:
        """Nodes at level k in all (the product of the counts down to it)."""
        return math.prod(self.counts[:k + 1])

    def to_dict(self) -> dict[str, int]:
        return {f"n_{letter}": n for letter, n in zip(self.letters, self.counts, strict=True)}

    @classmethod
    def from_dict(cls, row: Any) -> Branching:
        if not isinstance(row, dict) or not row or not all(
                isinstance(k, str) and k.startswith("n_") for k in row):
            raise MaltError(f"branching must map n_<letter> to a count, got {row!r}")
        for key, value in row.items():
            if type(value) is not int or value < 1:
                raise MaltError(f"branching {key} must be an integer >= 1, got {value!r}")
        return cls(*row.values(), letters=[k[2:] for k in row])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Branching) and (self.counts, self.letters) == (
            other.counts, other.letters)

    def __hash__(self) -> int:
        return hash((self.counts, self.letters))

    def __repr__(self) -> str:
        return f"Branching({', '.join(map(str, self.counts))}, letters={list(self.letters)})"


@dataclass
class Tree:
    """A problem and all its nodes, parents before children."""

    problem: Problem
    branching: Branching
    nodes: list[Node]
    schema_version: int = SCHEMA_VERSION

    def children(self, node_id: str | None) -> list[Node]:
        """Direct children of `node_id` (the G nodes when `node_id` is None)."""
        return [n for n in self.nodes if n.parent_id == node_id]

    def by_role(self, role: str) -> list[Node]:
        return [n for n in self.nodes if n.role == role]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "problem": asdict(self.problem),
            "branching": self.branching.to_dict(),
            "nodes": [_node_dict(n) for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Tree:
        """Parse and check one serialized tree; raises MaltError naming the bad field."""
        version = row.get("schema_version")
        if version != SCHEMA_VERSION:
            raise MaltError(f"unsupported tree schema_version {version!r} (expected {SCHEMA_VERSION})")
        try:
            problem = Problem(**row["problem"])
            branching = Branching.from_dict(row["branching"])
            nodes = [_node(n) for n in row["nodes"]]
        except KeyError as e:
            raise MaltError(f"tree is missing field {e.args[0]!r}") from None
        except TypeError as e:
            raise MaltError(f"tree has a malformed record: {e}") from None
        tree = cls(problem=problem, branching=branching, nodes=nodes)
        check_types(tree)
        check_shape(tree)
        return tree


# A node row with every field, or all but the last (prompt_tokens, written only when known),
# read by position: a third faster than Node(**row) and the same node.
_NODE_FIELDS = tuple(f.name for f in fields(Node))
_BY_POSITION = {len(names): itemgetter(*names) for names in (_NODE_FIELDS, _NODE_FIELDS[:-1])}


def _node(row: Any) -> Node:
    """Node(**row), with its errors for a row that is no node."""
    get = _BY_POSITION.get(len(row)) if type(row) is dict else None
    if get is not None:
        try:
            return Node(*get(row))
        except KeyError:  # another field instead of one of these: Node(**row) names it
            pass
    return Node(**row)


def _node_dict(node: Node) -> dict[str, Any]:
    row = asdict(node)
    if row["prompt_tokens"] is None:
        del row["prompt_tokens"]
    return row


def child_id(parent: str, letter: str, index: int) -> str:
    """Deterministic id of the `index`-th child of `parent` (a node id, or the problem id
    for first-level nodes) at a level whose role has id letter `letter`.

    >>> child_id(child_id("gsm8k-1a2b", "g", 0), "v", 2)
    'gsm8k-1a2b/g0/v2'
    """
    return f"{parent}/{letter}{index}"


def check_types(tree: Tree) -> None:
    """Raise MaltError naming the first field whose JSON type is wrong (a hand-edited tree)."""
    p = tree.problem
    for name in ("id", "question", "answer", "task"):
        if not isinstance(getattr(p, name), str):
            raise MaltError(f"problem field {name!r} is not a string")
    for n in tree.nodes:
        if not (isinstance(n.id, str) and isinstance(n.role, str)
                and isinstance(n.completion, str)):
            for name in ("id", "role", "completion"):
                if not isinstance(getattr(n, name), str):
                    raise MaltError(f"node {n.id!r}: field {name!r} is not a string")
        if n.parent_id is not None and not isinstance(n.parent_id, str):
            raise MaltError(f"node {n.id!r}: field 'parent_id' is not a string or null")
        if not _is_messages(n.prompt):
            raise MaltError(f"node {n.id!r}: field 'prompt' is not a list of messages "
                            "(objects with a string role and content)")


_MESSAGE_KEYS = frozenset(("role", "content"))


def _is_messages(prompt: Any) -> bool:
    if not isinstance(prompt, list):
        return False
    for m in prompt:
        if not (isinstance(m, dict) and m.keys() == _MESSAGE_KEYS
                and isinstance(m["role"], str) and isinstance(m["content"], str)):
            return False
    return True


def check_shape(tree: Tree) -> None:
    """Raise MaltError when the nodes contradict the tree's branching or id scheme.

    Each level holds one role: every node of a level has the same role, its parent is a
    node of the level above, listed before it, and every parent has its level's count of
    children.
    """
    b, pid = tree.branching, tree.problem.id
    depth: dict[str, int] = {}
    level_role: dict[int, str] = {}
    counts: dict[str | None, int] = {}
    for n in tree.nodes:
        if n.id in depth:
            raise MaltError(f"node id {n.id!r} appears twice in tree {pid!r}")
        if n.parent_id is None:
            level = 0
        elif n.parent_id in depth:
            level = depth[n.parent_id] + 1
        else:
            raise MaltError(f"{n.role} node {n.id!r} needs its parent listed before it, "
                            f"got parent_id {n.parent_id!r}")
        if level >= len(b.counts):
            raise MaltError(f"node {n.id!r} is at level {level + 1} but the branching has "
                            f"{len(b.counts)} levels")
        if level_role.setdefault(level, n.role) != n.role:
            raise MaltError(f"node {n.id!r} has role {n.role!r} but level {level + 1} holds "
                            f"{level_role[level]!r} nodes")
        parent = n.parent_id if n.parent_id is not None else pid
        if not n.id.startswith(f"{parent}/"):
            raise MaltError(f"node id {n.id!r} does not start with {parent!r}")
        depth[n.id] = level
        counts[n.parent_id] = counts.get(n.parent_id, 0) + 1
    shape = "x".join(map(str, b.counts))
    for level in range(len(b.counts)):
        got = sum(1 for d in depth.values() if d == level)
        if got != b.at_level(level):
            what = level_role.get(level, f"level-{level + 1}")
            raise MaltError(f"tree {pid!r} has {got} {what} nodes but its "
                            f"branching {shape} needs {b.at_level(level)}")
    for node_id, level in depth.items():
        if level + 1 < len(b.counts) and counts.get(node_id, 0) != b.counts[level + 1]:
            raise MaltError(f"node {node_id!r} has {counts.get(node_id, 0)} children but "
                            f"branching needs {b.counts[level + 1]}")
