"""Typed records shared by every stage: problems, tree nodes and trees.

A tree holds one problem and its G -> V -> R nodes in a flat list, parents before
children. Node ids are derived from the problem id and the node's path, so reruns,
resumes and later stages always line up:

    <problem_id>/g1            generator output 1
    <problem_id>/g1/v0         verifier critique 0 of that output
    <problem_id>/g1/v0/r2      refinement 2 of that critique
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from malt.errors import MaltError

SCHEMA_VERSION = 1

GENERATOR = "generator"
VERIFIER = "verifier"
REFINER = "refiner"
ROLES: tuple[str, ...] = (GENERATOR, VERIFIER, REFINER)
_ROLE_LETTER = {GENERATOR: "g", VERIFIER: "v", REFINER: "r"}

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


@dataclass(frozen=True)
class Branching:
    """Children per parent for each level: n_g per question, n_v per G, n_r per V."""

    n_g: int = 3
    n_v: int = 3
    n_r: int = 3

    @property
    def leaves(self) -> int:
        return self.n_g * self.n_v * self.n_r

    @property
    def nodes(self) -> int:
        return self.n_g + self.n_g * self.n_v + self.leaves


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
            "branching": asdict(self.branching),
            "nodes": [asdict(n) for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Tree:
        """Parse and check one serialized tree; raises MaltError naming the bad field."""
        version = row.get("schema_version")
        if version != SCHEMA_VERSION:
            raise MaltError(f"unsupported tree schema_version {version!r} (expected {SCHEMA_VERSION})")
        try:
            problem = Problem(**row["problem"])
            branching = Branching(**row["branching"])
            nodes = [Node(**n) for n in row["nodes"]]
        except KeyError as e:
            raise MaltError(f"tree is missing field {e.args[0]!r}") from None
        except TypeError as e:
            raise MaltError(f"tree has a malformed record: {e}") from None
        tree = cls(problem=problem, branching=branching, nodes=nodes)
        check_types(tree)
        check_shape(tree)
        return tree


def child_id(parent: str, role: str, index: int) -> str:
    """Deterministic id of the `index`-th `role` child of `parent` (a node id, or the
    problem id for generator nodes).

    >>> child_id(child_id("gsm8k-1a2b", "generator", 0), "verifier", 2)
    'gsm8k-1a2b/g0/v2'
    """
    return f"{parent}/{_ROLE_LETTER[role]}{index}"


def check_types(tree: Tree) -> None:
    """Raise MaltError naming the first field whose JSON type is wrong (a hand-edited tree)."""
    p = tree.problem
    for name in ("id", "question", "answer", "task"):
        if not isinstance(getattr(p, name), str):
            raise MaltError(f"problem field {name!r} is not a string")
    for name in ("n_g", "n_v", "n_r"):
        value = getattr(tree.branching, name)
        if type(value) is not int or value < 1:
            raise MaltError(f"branching {name} must be an integer >= 1, got {value!r}")
    for n in tree.nodes:
        for name in ("id", "role", "completion"):
            if not isinstance(getattr(n, name), str):
                raise MaltError(f"node {n.id!r}: field {name!r} is not a string")
        if n.parent_id is not None and not isinstance(n.parent_id, str):
            raise MaltError(f"node {n.id!r}: field 'parent_id' is not a string or null")
        if not _is_messages(n.prompt):
            raise MaltError(f"node {n.id!r}: field 'prompt' is not a list of messages "
                            "(objects with a string role and content)")


def _is_messages(prompt: Any) -> bool:
    return isinstance(prompt, list) and all(
        isinstance(m, dict) and m.keys() == {"role", "content"}
        and isinstance(m["role"], str) and isinstance(m["content"], str)
        for m in prompt
    )


def check_shape(tree: Tree) -> None:
    """Raise MaltError when the nodes contradict the tree's branching or id scheme."""
    b, pid = tree.branching, tree.problem.id
    expected_children = {GENERATOR: b.n_g, VERIFIER: b.n_v, REFINER: b.n_r}
    parent_role = {GENERATOR: None, VERIFIER: GENERATOR, REFINER: VERIFIER}
    seen: dict[str, Node] = {}
    counts: dict[str | None, int] = {}
    for n in tree.nodes:
        if n.role not in expected_children:
            raise MaltError(f"node {n.id!r} has unknown role {n.role!r}")
        if n.id in seen:
            raise MaltError(f"node id {n.id!r} appears twice in tree {pid!r}")
        want_parent_role = parent_role[n.role]
        if want_parent_role is None:
            if n.parent_id is not None:
                raise MaltError(f"generator node {n.id!r} must have no parent")
        elif n.parent_id not in seen or seen[n.parent_id].role != want_parent_role:
            raise MaltError(
                f"{n.role} node {n.id!r} needs a {want_parent_role} parent listed before it, "
                f"got parent_id {n.parent_id!r}"
            )
        if not n.id.startswith(f"{pid}/"):
            raise MaltError(f"node id {n.id!r} does not start with problem id {pid!r}")
        seen[n.id] = n
        counts[n.parent_id] = counts.get(n.parent_id, 0) + 1
    _check_counts(tree, counts, expected_children)


def _check_counts(tree: Tree, counts: dict[str | None, int], expected: dict[str, int]) -> None:
    b = tree.branching
    total = {role: sum(1 for n in tree.nodes if n.role == role) for role in expected}
    want = {GENERATOR: b.n_g, VERIFIER: b.n_g * b.n_v, REFINER: b.leaves}
    for role in ROLES:
        if total[role] != want[role]:
            raise MaltError(
                f"tree {tree.problem.id!r} has {total[role]} {role} nodes but its branching "
                f"{b.n_g}x{b.n_v}x{b.n_r} needs {want[role]}"
            )
    for n in tree.nodes:
        if n.role == REFINER:
            continue
        child_role = VERIFIER if n.role == GENERATOR else REFINER
        got = counts.get(n.id, 0)
        if got != expected[child_role]:
            raise MaltError(
                f"node {n.id!r} has {got} children but branching needs {expected[child_role]}"
            )
