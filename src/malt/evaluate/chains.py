"""k inference chains per question: the tree sampler with branching k x 1 x ... x 1.

Evaluation runs the same sampler as training (`malt.sampling.sample_trees`): the first role
is sampled k times per question, every later role once per chain, one backend call per role.
So seeds follow the one scheme (run seed, parent node id, role), and a question's chains do
not depend on batching or on which other questions are in the subset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from malt.backends.base import Backend, SamplingParams
from malt.chain import RoleChain
from malt.records import Problem, Tree
from malt.sampling import sample_trees
from malt.tasks.base import Task


@dataclass(frozen=True)
class Step:
    """One role's output in a chain; `answer` is extracted for answering roles."""

    role: str
    text: str
    answer: str | None
    finish_reason: str | None = None
    num_tokens: int | None = None
    prompt_tokens: int | None = None  # shared by the k first-role steps of one question


@dataclass(frozen=True)
class Chain:
    """One sampled chain: each role's output, in chain order."""

    steps: tuple[Step, ...]

    @property
    def answer(self) -> str | None:
        """The final answer: the last role's."""
        return self.steps[-1].answer

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(s.role for s in self.steps)

    def to_dict(self) -> dict:
        return {"steps": [asdict(s) for s in self.steps]}

    @classmethod
    def from_dict(cls, row: dict) -> Chain:
        return cls(tuple(Step(**s) for s in row["steps"]))


def prompt_counted(chain: int, step: int) -> bool:
    """Whether step `step` of chain `chain` of a question sent its own prompt: the k chains
    share their first role's prompt (one call with n = k), so it counts for chain 0 only."""
    return step > 0 or chain == 0


def run_chains(
    backend: Backend,
    task: Task,
    problems: Sequence[Problem],
    chain: RoleChain,
    k: int,
    params: SamplingParams,
    seed: int,
) -> list[list[Chain]]:
    """k chains of `chain`'s roles for each problem (outer list follows `problems`)."""
    if not problems:
        return []
    sampling = {r.name: SamplingParams(n=k if i == 0 else 1, temperature=params.temperature,
                                       top_p=params.top_p, max_new_tokens=params.max_new_tokens)
                for i, r in enumerate(chain)}
    trees, _ = sample_trees(task, problems, backend, sampling, seed, chain=chain)
    return [chains_of(t) for t in trees]


def chains_of(tree: Tree) -> list[Chain]:
    """A k x 1 x ... x 1 tree as its k chains (root to leaf), in first-level order."""
    by_id = {n.id: n for n in tree.nodes}
    depth = len(tree.branching.counts)
    out = []
    for leaf in tree.nodes[-tree.branching.leaves:]:
        path, node = [], leaf
        while node is not None:
            path.append(Step(node.role, node.completion, node.answer, node.finish_reason,
                             node.num_tokens, node.prompt_tokens))
            node = by_id.get(node.parent_id) if node.parent_id else None
        assert len(path) == depth
        out.append(Chain(tuple(reversed(path))))
    return out
