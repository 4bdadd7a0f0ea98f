"""Role datasets from labelled trees, in TRL's conversational formats.

SFT rows are `{"prompt": [system, user], "completion": [assistant]}`; DPO rows are
`{"prompt": [...], "chosen": [assistant], "rejected": [assistant]}`. Siblings share their
parent's prompt, so a pair is always two answers to the very same prompt.

- SFT: every node labelled positive (for a leaf: its answer is right), in the dataset of its
  role's model slot (`malt.chain`).
- DPO: positive vs negative siblings (one parent, one prompt) of the roles whose `pairs` is
  on. With G -> V -> R: critiques under one generator output, refinements under one critique
  (correct vs incorrect), and generator outputs under one question only when asked.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from malt.chain import DEFAULT, RoleChain
from malt.records import Node, Tree

Row = dict[str, Any]


def sft_row(node: Node) -> Row:
    """A prompt/completion row teaching `node`'s completion."""
    return {"prompt": node.prompt, "completion": [_assistant(node.completion)]}


def dpo_row(chosen: Node, rejected: Node) -> Row:
    """A prompt/chosen/rejected row from two siblings."""
    return {
        "prompt": chosen.prompt,
        "chosen": [_assistant(chosen.completion)],
        "rejected": [_assistant(rejected.completion)],
    }


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def sft_nodes(tree: Tree) -> Iterator[Node]:
    """The positive nodes of every role, in tree order."""
    for n in tree.nodes:
        if n.label is None:
            raise ValueError(f"node {n.id!r} has no label: assign values first")
        if n.label:
            yield n


def preference_pairs(
    tree: Tree,
    max_pairs_per_parent: int | None = None,
    seed: int = 0,
    roles: tuple[str, ...] | None = None,
) -> Iterator[tuple[Node, Node]]:
    """(chosen, rejected) siblings for each role in `roles` (default: the G -> V -> R chain's
    pair roles, V and R), grouped by parent.

    All positive x negative combinations by default; with `max_pairs_per_parent`, a
    subset chosen by a generator seeded from (seed, parent id), so it never depends on
    which other trees are in the run.
    """
    roles = pair_roles(DEFAULT) if roles is None else roles
    groups: dict[tuple[str, str | None], list[Node]] = {}
    for n in tree.nodes:
        if n.role in roles:
            groups.setdefault((n.role, n.parent_id), []).append(n)
    for (_, parent), siblings in groups.items():
        pos = [n for n in siblings if n.label]
        neg = [n for n in siblings if n.label is False]
        pairs = list(itertools.product(pos, neg))
        if max_pairs_per_parent is not None and len(pairs) > max_pairs_per_parent:
            rng = random.Random(f"{seed}:{parent or tree.problem.id}")
            keep = sorted(rng.sample(range(len(pairs)), max_pairs_per_parent))
            pairs = [pairs[i] for i in keep]
        yield from pairs


def pair_roles(chain: RoleChain) -> tuple[str, ...]:
    """The roles whose siblings make DPO pairs."""
    return tuple(r.name for r in chain if r.pairs)


@dataclass
class RoleStats:
    """Counts that say how much training signal the trees carried.

    `positives`/`negatives` are per role; `sft_rows`, `dpo_pairs` and `trees_without_pairs`
    per dataset, i.e. per model slot (the same names with one role per slot).
    """

    chain: RoleChain = DEFAULT
    trees: int = 0
    leaves: int = 0
    correct_leaves: int = 0
    trees_all_correct: int = 0  # no pairs at the last level: nothing to contrast
    trees_all_wrong: int = 0
    positives: dict[str, int] = field(default_factory=dict)
    negatives: dict[str, int] = field(default_factory=dict)
    sft_rows: dict[str, int] = field(default_factory=dict)
    dpo_pairs: dict[str, int] = field(default_factory=dict)
    trees_without_pairs: dict[str, int] = field(default_factory=dict)
    first_correct: int = 0
    first_nodes: int = 0

    def __post_init__(self) -> None:
        roles, slots = self.chain.names, self.chain.models
        pair_slots = tuple(dict.fromkeys(r.model for r in self.chain if r.pairs))
        for counts, keys in ((self.positives, roles), (self.negatives, roles),
                             (self.sft_rows, slots), (self.dpo_pairs, slots),
                             (self.trees_without_pairs, pair_slots)):
            counts.update(dict.fromkeys(keys, 0))

    def add_tree(self, tree: Tree) -> None:
        """Count one labelled tree's nodes (datasets are counted by the caller)."""
        self.trees += 1
        leaves = tree.by_role(self.chain.leaf.name)
        correct = sum(n.reward or 0 for n in leaves)
        self.leaves += len(leaves)
        self.correct_leaves += correct
        self.trees_all_correct += correct == len(leaves)
        self.trees_all_wrong += correct == 0
        first = self.chain.roles[0].name
        for n in tree.nodes:
            (self.positives if n.label else self.negatives)[n.role] += 1
            if n.role == first:
                self.first_nodes += 1
                self.first_correct += n.reward or 0

    def to_dict(self) -> dict[str, Any]:
        def rate(a: int, b: int) -> float | None:
            return round(a / b, 6) if b else None

        return {
            "trees": self.trees,
            "leaves": self.leaves,
            "leaf_accuracy": rate(self.correct_leaves, self.leaves),
            # The first role's accuracy (the generator's, with G -> V -> R).
            f"{self.chain.roles[0].name}_accuracy": rate(self.first_correct, self.first_nodes),
            "trees_all_correct": self.trees_all_correct,
            "trees_all_wrong": self.trees_all_wrong,
            "positives": self.positives,
            "negatives": self.negatives,
            "sft_rows": self.sft_rows,
            "dpo_pairs": self.dpo_pairs,
            "trees_without_pairs": self.trees_without_pairs,
        }
