"""The one sampler: trees of a role chain for a chunk of questions, level by level.

Training trees and evaluation chains are both sampled here: a training tree branches
n x n x n, an evaluation run is the same tree with branching k x 1 x 1 (k chains per
question). All prompts of a level go to the backend in one call, so the backend always sees
large batches. The sampler is pure over a `Backend`: no files, no globals.

Seeds: the `n` children of one parent share one prompt, whose seed is
`derive_seed(run_seed, parent_id, role)` (the problem id stands in for the parent of
first-level nodes); backends derive sample j's seed from it as `derive_seed(prompt_seed, j)`.
A node's sample therefore depends only on the run seed, its id and its role, never on which
other questions share the chunk (up to each backend's documented limits), so a resumed run
reproduces it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from malt.backends.base import Backend, Completion, SamplingParams, derive_seed
from malt.chain import ANSWER, CRITIQUE, DEFAULT, Role, RoleChain
from malt.errors import MaltError
from malt.records import Branching, Node, Problem, Tree, child_id
from malt.tasks.base import Task

# Called after each level with (role, generations, generated tokens).
LevelCallback = Callable[[str, int, int], None]


@dataclass
class SampleStats:
    """Counts for one or more chunks, per role: generations and generated tokens, and the
    token ledger's other half, prompts sent and their tokens (a prompt's n samples share it)."""

    generations: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    prompts: dict[str, int] = field(default_factory=dict)
    prompt_tokens: dict[str, int] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens.values())

    def count(self, role: str, generations: int, tokens: int, prompts: int = 0,
              prompt_tokens: int = 0) -> None:
        for counts, n in ((self.generations, generations), (self.tokens, tokens),
                          (self.prompts, prompts), (self.prompt_tokens, prompt_tokens)):
            counts[role] = counts.get(role, 0) + n

    def ledger(self) -> dict[str, dict[str, int]]:
        """Per role: prompts and their tokens, samples and their (completion) tokens."""
        return {role: {"prompts": self.prompts.get(role, 0),
                       "prompt_tokens": self.prompt_tokens.get(role, 0),
                       "samples": self.generations[role],
                       "completion_tokens": self.tokens[role]} for role in self.generations}


def prompt_seed(run_seed: int, parent_id: str, role: str) -> int:
    """Seed of the prompt whose samples become `role` children of `parent_id`.

    >>> prompt_seed(0, "q1", "generator") == prompt_seed(0, "q1", "generator")
    True
    >>> prompt_seed(0, "q1", "generator") != prompt_seed(1, "q1", "generator")
    True
    """
    return derive_seed(run_seed, parent_id, role)


def branching_of(sampling: Mapping[str, SamplingParams], chain: RoleChain = DEFAULT) -> Branching:
    """The tree shape implied by each role's `n`."""
    return Branching(*(sampling[r.name].n for r in chain), letters=[r.letter for r in chain])


def prompt_for(task: Task, role: Role, problem: Problem, path: Mapping[str, Node]) -> list:
    """`role`'s messages on `problem`, its slots filled from the outputs on its path."""
    src = {slot: path[name].completion for slot, name in role.sees if name in path}
    return task.messages(role.template, problem, answer=src.get(ANSWER),
                         critique=src.get(CRITIQUE))


def sample_trees(
    task: Task,
    problems: Sequence[Problem],
    backend: Backend,
    sampling: Mapping[str, SamplingParams],
    run_seed: int,
    on_level: LevelCallback | None = None,
    *,
    chain: RoleChain = DEFAULT,
) -> tuple[list[Tree], SampleStats]:
    """Sample one full tree of `chain` (the paper's G -> V -> R by default) per problem; one
    backend call per role.

    The backend serves each role under its name (`backend.generate(role.name, ...)`).
    """
    stats = SampleStats()
    if len({p.id for p in problems}) != len(problems):
        raise MaltError("sample_trees got the same problem id twice in one chunk")
    # Each open path: its problem and the nodes on it so far, by role name.
    paths: list[tuple[Problem, dict[str, Node]]] = [(p, {}) for p in problems]
    nodes: list[tuple[Problem, Node]] = []
    parent: Role | None = None
    for role in chain:
        params = sampling[role.name]
        prompts = [prompt_for(task, role, p, path) for p, path in paths]
        parent_ids = [path[parent.name].id if parent else p.id for p, path in paths]
        seeds = [prompt_seed(run_seed, pid, role.name) for pid in parent_ids]
        outputs = backend.generate(role.name, prompts, params, seeds) if prompts else []
        _check_outputs(role.name, outputs, len(prompts), params.n)
        level: list[tuple[Problem, dict[str, Node]]] = []
        for (problem, path), prompt, pid, completions in zip(paths, prompts, parent_ids,
                                                             outputs, strict=True):
            for j, c in enumerate(completions):
                node = _node(task, role, prompt, pid if parent else None,
                             child_id(pid, role.letter, j), c)
                nodes.append((problem, node))
                level.append((problem, {**path, role.name: node}))
        tokens = sum(path[role.name].num_tokens or 0 for _, path in level)
        prompt_tokens = sum(cs[0].prompt_tokens or 0 for cs in outputs if cs)
        stats.count(role.name, len(level), tokens, len(prompts), prompt_tokens)
        if on_level is not None:
            on_level(role.name, len(level), tokens)
        paths, parent = level, role
    return _assemble(problems, branching_of(sampling, chain), nodes), stats


def _node(task: Task, role: Role, prompt: list, parent_id: str | None, node_id: str,
          c: Completion) -> Node:
    """A tree node from one completion; answering roles' nodes carry the extracted answer."""
    return Node(
        id=node_id,
        role=role.name,
        parent_id=parent_id,
        prompt=prompt,
        completion=c.text,
        answer=task.extract_answer(c.text) if role.answers else None,
        num_tokens=c.num_tokens,
        finish_reason=c.finish_reason,
        prompt_tokens=c.prompt_tokens,
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
