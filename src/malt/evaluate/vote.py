"""Majority vote over the final answers of k chains, by the task's own answer equivalence.

Answers are grouped into equivalence classes: two answers share a class when the task calls
them equivalent in either argument order, and classes are the connected components of that
relation (so a non-transitive checker such as math-verify still gives one grouping, whatever
order the chains come in). `None` (no extractable answer) never joins a class.

Tie-break, documented and order-free: the largest class wins; among equally large classes the
one whose representative answer sorts first as a Python string wins. A class's representative
is its most frequent exact string (ties again to the smallest string). The vote is `None` only
when every chain gave no answer. Because nothing depends on chain order, shuffling the chains
never changes the vote.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Equivalence = Callable[[str, str], bool]


@dataclass(frozen=True)
class Vote:
    """The winning answer, how many chains backed it, and which chains (by index) did."""

    answer: str | None
    votes: int
    supporters: tuple[int, ...]
    num_classes: int


def equivalence_classes(answers: Sequence[str], equivalent: Equivalence) -> list[list[int]]:
    """Indices of `answers` grouped into connected components of symmetric equivalence.

    >>> equivalence_classes(["2", "2.0", "3"], lambda a, b: float(a) == float(b))
    [[0, 1], [2]]
    """
    parent = list(range(len(answers)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(answers)):
        for j in range(i + 1, len(answers)):
            if find(i) == find(j):
                continue  # already joined: skip the (possibly slow) checker
            a, b = answers[i], answers[j]
            if a == b or equivalent(a, b) or equivalent(b, a):
                parent[find(j)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(answers)):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values())


def representative(answers: Sequence[str]) -> str:
    """The most frequent exact string; ties go to the smallest string.

    >>> representative(["1/2", "0.5", "0.5", "1/2", "\\\\frac12"])
    '0.5'
    """
    counts = Counter(answers)
    return min(counts, key=lambda a: (-counts[a], a))


def majority_vote(answers: Sequence[str | None], equivalent: Equivalence) -> Vote:
    """Vote over chain answers; None never wins unless every answer is None.

    >>> same = lambda a, b: float(a) == float(b)
    >>> majority_vote(["7", None, "7.0", "8"], same)
    Vote(answer='7', votes=2, supporters=(0, 2), num_classes=2)
    >>> majority_vote(["9", "8"], same).answer  # a tie: the smaller string wins
    '8'
    >>> majority_vote([None, None], same)
    Vote(answer=None, votes=0, supporters=(), num_classes=0)
    """
    real = [i for i, a in enumerate(answers) if a is not None]
    if not real:
        return Vote(answer=None, votes=0, supporters=(), num_classes=0)
    texts = [answers[i] for i in real]
    classes = [[real[k] for k in group] for group in equivalence_classes(texts, equivalent)]
    reps = [representative([answers[i] for i in group]) for group in classes]
    best = min(range(len(classes)), key=lambda c: (-len(classes[c]), reps[c]))
    return Vote(
        answer=reps[best],
        votes=len(classes[best]),
        supporters=tuple(sorted(classes[best])),
        num_classes=len(classes),
    )
