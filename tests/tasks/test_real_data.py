"""The loaders and graders on the real public datasets (skipped when they are absent).

Every gold answer, written in the G prompt's marked format, must grade correct against
itself; another problem's (different) gold must grade incorrect. The full-set math-verify
figures are in bench/bench_grading.py; here MATH goes through the exact-match shortcut for
all rows and straight through math-verify for a sample, to stay fast.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from malt.records import Problem
from malt.tasks import get_task
from malt.tasks.math import normalize
from malt.tasks.mathverify import MathVerifier

FILES = [
    ("gsm8k", "gsm8k/train.jsonl", 7473),
    ("gsm8k", "gsm8k/test.jsonl", 1319),
    ("math", "math/train.jsonl", 7500),
    ("math", "math/test.jsonl", 5000),
    ("math", "math/prm800k_math_splits/test.jsonl", 500),
    ("csqa", "commonsenseqa/train_rand_split.jsonl", 9741),
    ("csqa", "commonsenseqa/dev_rand_split.jsonl", 1221),
]
MARKED: dict[str, Callable[[str], str]] = {
    "gsm8k": lambda a: f"Adding everything up step by step.\nFinal Answer: {a}",
    "csqa": lambda a: f"Only one choice fits.\nFinal Answer: ({a})",
    "math": lambda a: f"Putting it together, the answer is $\\boxed{{{a}}}$.",
}
_cache: dict[str, list[Problem]] = {}


def load(shared_data: Path, task_name: str, rel: str) -> list[Problem]:
    key = f"{task_name}:{rel}"
    if key not in _cache:
        _cache[key] = get_task(task_name).load(str(shared_data / rel))
    return _cache[key]


def other_gold(problems: list[Problem], i: int, key: Callable[[str], object]) -> str:
    """The gold of the next problem whose answer differs from problem i's."""
    for k in range(1, len(problems)):
        cand = problems[(i + k) % len(problems)].answer
        if cand and key(cand) != key(problems[i].answer):
            return cand
    raise AssertionError("every problem has the same answer")


@pytest.mark.parametrize(("task_name", "rel", "rows"), FILES)
def test_row_counts_and_ids(shared_data: Path, task_name: str, rel: str, rows: int) -> None:
    problems = load(shared_data, task_name, rel)
    assert len(problems) == rows
    ids = [p.id for p in problems]
    assert len(set(ids)) == rows
    assert all(i.startswith(f"{task_name}-") and "/" not in i for i in ids)
    again = get_task(task_name).load(str(shared_data / rel), limit=50)
    assert [p.id for p in again] == ids[:50]  # stable across loads
    assert all(p.question.strip() and p.task == task_name for p in problems)


@pytest.mark.parametrize(("task_name", "rel", "rows"), [f for f in FILES if f[0] != "math"])
def test_gold_grades_itself_and_rejects_others(
    shared_data: Path, task_name: str, rel: str, rows: int
) -> None:
    task, fmt = get_task(task_name), MARKED[task_name]
    problems = load(shared_data, task_name, rel)
    assert all(task.reward(fmt(p.answer), p) == 1 for p in problems)
    assert all(task.is_equivalent(p.answer, p.answer) for p in problems)
    wrong = sum(task.reward(fmt(other_gold(problems, i, str)), p) for i, p in enumerate(problems))
    assert wrong == 0


@pytest.mark.parametrize("rel", ["math/train.jsonl", "math/test.jsonl"])
def test_math_gold_boxes_grade_themselves(shared_data: Path, rel: str) -> None:
    task = get_task("math")
    problems = load(shared_data, "math", rel)
    # The model's view: the full reference solution text, graded against the gold answer.
    missed = {p.id for p in problems if not task.reward(p.meta["solution"], p)}
    rate = 1 - len(missed) / len(problems)
    print(f"{rel}: reference solutions graded correct {len(problems) - len(missed)}/"
          f"{len(problems)} = {rate:.4%}")
    assert rate >= 0.995
    ungradable = {p.id for p in problems if not p.answer}
    # Besides the empty-box rows, only reference solutions that box two different values for a
    # question asking for one ("enter only one of them, not both") fail: several boxes are read
    # as one set answer, so a hedge earns nothing.
    assert missed - ungradable <= TWO_BOX_SOLUTIONS


TWO_BOX_SOLUTIONS = {"math-test-intermediate_algebra-25", "math-test-intermediate_algebra-702",
                     "math-train-intermediate_algebra-396", "math-train-number_theory-837"}


def test_math_sample_through_math_verify(shared_data: Path) -> None:
    problems = load(shared_data, "math", "math/test.jsonl")
    n = 300
    idx = random.Random(0).sample(range(len(problems)), n)
    verifier = MathVerifier()
    try:
        same = sum(verifier.equivalent(problems[i].answer, problems[i].answer) for i in idx)
        wrong = [other_gold(problems, i, normalize) for i in idx]
        rejected = sum(
            not verifier.equivalent(w, problems[i].answer) for w, i in zip(wrong, idx, strict=True)
        )
    finally:
        verifier.close()
    print(f"math-verify sample: self {same}/{n}, wrong rejected {rejected}/{n}")
    assert same / n >= 0.995 and rejected / n >= 0.95


def test_math500_box_matches_answer_field(shared_data: Path) -> None:
    task = get_task("math")
    problems = load(shared_data, "math", "math/prm800k_math_splits/test.jsonl")
    agree = sum(task.is_equivalent(p.meta["reference_answer"], p.answer) for p in problems)
    print(f"MATH-500 boxed vs answer field: {agree}/{len(problems)}")
    assert agree / len(problems) >= 0.995
