"""The MALT tree sampler: G -> V -> R trees for a chunk of questions, level by level.

All generator prompts of a chunk go to the backend in one call, then all verifier prompts,
then all refiner prompts, so the backend always sees large batches. The sampler is pure over
a `Backend`: no files, no globals.

Seeds: the `n` children of one parent share one prompt, whose seed is
`derive_seed(run_seed, parent_id, role)` (the problem id stands in for the parent of G
nodes); backends derive sample j's seed from it as `derive_seed(prompt_seed, j)`. A node's
sample therefore depends only on the run seed and its id, never on which other questions
share the chunk (up to each backend's documented limits), so a resumed run reproduces it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from malt.backends.base import Backend, Completion, SamplingParams, derive_seed
from malt.errors import MaltError
from malt.records import (
    GENERATOR,
    REFINER,
    ROLES,
    VERIFIER,
    Branching,
    Node,
    Problem,
    Tree,
    child_id,
)
from malt.tasks.base import Task

# Called after each level with (role, generations, generated tokens).
LevelCallback = Callable[[str, int, int], None]


@dataclass
class SampleStats:
    """Counts for one or more chunks: generations and generated tokens per role."""

    generations: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROLES, 0))
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROLES, 0))

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens.values())

    def add(self, other: SampleStats) -> None:
        for role in ROLES:
            self.generations[role] += other.generations[role]
            self.tokens[role] += other.tokens[role]


def prompt_seed(run_seed: int, parent_id: str, role: str) -> int:
    """Seed of the prompt whose samples become `role` children of `parent_id`.

    >>> prompt_seed(0, "q1", "generator") == prompt_seed(0, "q1", "generator")
    True
    >>> prompt_seed(0, "q1", "generator") != prompt_seed(1, "q1", "generator")
    True
    """
    return derive_seed(run_seed, parent_id, role)


def branching_of(sampling: Mapping[str, SamplingParams]) -> Branching:
    """The tree shape implied by each role's `n`."""
    return Branching(sampling[GENERATOR].n, sampling[VERIFIER].n, sampling[REFINER].n)


def sample_trees(
    task: Task,
    problems: Sequence[Problem],
    backend: Backend,
    sampling: Mapping[str, SamplingParams],
    run_seed: int,
    on_level: LevelCallback | None = None,
) -> tuple[list[Tree], SampleStats]:
    """Sample one full tree per problem; three backend calls in all (one per level)."""
    stats = SampleStats()
    if len({p.id for p in problems}) != len(problems):
        raise MaltError("sample_trees got the same problem id twice in one chunk")
    level = (task, backend, sampling, run_seed, stats, on_level)
    g_level = _level(*level, GENERATOR, [(p, None, None) for p in problems])
    v_level = _level(*level, VERIFIER, [(p, g, None) for p, g in g_level])
    g_by_id = {g.id: g for _, g in g_level}
    r_level = _level(*level, REFINER, [(p, g_by_id[v.parent_id], v) for p, v in v_level])
    trees = _assemble(problems, branching_of(sampling), g_level + v_level + r_level)
    return trees, stats


# (problem, generator node or None, verifier node or None) for each parent of a level.
Parent = tuple[Problem, Node | None, Node | None]


def _level(
    task: Task,
    backend: Backend,
    sampling: Mapping[str, SamplingParams],
    run_seed: int,
    stats: SampleStats,
    on_level: LevelCallback | None,
    role: str,
    parents: Sequence[Parent],
) -> list[tuple[Problem, Node]]:
    """One backend call for every parent of this level; returns (problem, child) pairs."""
    params = sampling[role]
    prompts, seeds, parent_ids = [], [], []
    for problem, g, v in parents:
        gen_text = g.completion if g is not None else None
        crit_text = v.completion if v is not None else None
        prompts.append(task.messages(role, problem, generator=gen_text, critique=crit_text))
        parent = v if v is not None else g
        parent_id = parent.id if parent is not None else problem.id
        parent_ids.append(parent_id)
        seeds.append(prompt_seed(run_seed, parent_id, role))
    outputs = backend.generate(role, prompts, params, seeds) if prompts else []
    _check_outputs(role, outputs, len(prompts), params.n)
    nodes = []
    for (problem, _, _), prompt, parent_id, completions in zip(
        parents, prompts, parent_ids, outputs, strict=True
    ):
        for j, c in enumerate(completions):
            nodes.append((problem, _node(task, role, prompt, parent_id, j, c)))
    tokens = sum(n.num_tokens or 0 for _, n in nodes)
    stats.generations[role] += len(nodes)
    stats.tokens[role] += tokens
    if on_level is not None:
        on_level(role, len(nodes), tokens)
    return nodes


def _node(task: Task, role: str, prompt: list, parent_id: str, j: int, c: Completion) -> Node:
    """A tree node from one completion; G and R nodes carry the extracted final answer."""
    answer = task.extract_answer(c.text) if role in (GENERATOR, REFINER) else None
    return Node(
        id=child_id(parent_id, role, j),
        role=role,
        parent_id=None if role == GENERATOR else parent_id,
        prompt=prompt,
        completion=c.text,
        answer=answer,
        num_tokens=c.num_tokens,
        finish_reason=c.finish_reason,
    )


def _check_outputs(role: str, outputs: Sequence, want_prompts: int, n: int) -> None:
    if len(outputs) != want_prompts:
        raise MaltError(
            f"the backend returned {len(outputs)} {role} results for {want_prompts} prompts"
        )
    for i, completions in enumerate(outputs):
        if len(completions) != n:
            raise MaltError(
                f"the backend returned {len(completions)} {role} completions for prompt {i}, "
                f"expected {n}"
            )


def _assemble(
    problems: Sequence[Problem], branching: Branching, nodes: list[tuple[Problem, Node]]
) -> list[Tree]:
    """Group nodes into one tree per problem, keeping level order (parents first)."""
    grouped: dict[str, list[Node]] = {p.id: [] for p in problems}
    for problem, node in nodes:
        grouped[problem.id].append(node)
    return [Tree(problem=p, branching=branching, nodes=grouped[p.id]) for p in problems]
