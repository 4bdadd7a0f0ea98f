"""Model text is data: code in a completion must never run, and never grade as correct."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from malt.records import Problem
from malt.tasks import get_task

# Golds the payloads would reach only if evaluated (no path digits can spell them by chance).
GOLD = {"gsm8k": "4242", "math": "4242", "csqa": "D"}


def payloads(marker: Path) -> list[str]:
    """Completions that would create `marker` if anything evaluated them as Python."""
    cmd = f"touch {marker}"
    imp = f"__import__('os').system('{cmd}')"
    return [
        f"\\boxed{{{imp}}}",
        f'__import__("os").system("{cmd}")',
        f"exec(\"import os; os.system('{cmd}')\")",
        f"eval(compile(\"__import__('os').system('{cmd}')\", 'x', 'exec'))",
        f"Final Answer: {imp}",
        f"The answer is ${imp}$",
        f"\\boxed{{\\text{{{imp}}}}}",
        f"\\boxed{{\\operatorname{{exec}}({imp})}}",
        f"\\boxed{{1}}; {imp}",
        f"Final Answer: ({imp})",
        f"#### {imp}",
        f"\\boxed{{(lambda: {imp})()}}",
        f"\\boxed{{[x for x in ().__class__.__base__.__subclasses__()]}} {imp}",
        # evaluating these would give the gold 4242 for the numeric tasks
        "\\boxed{eval('4200+42')}",
        "Final Answer: exec('x=4200+42')",
        "The answer is $__import__('builtins').eval('4200+42')$",
    ]


@pytest.mark.parametrize("task_name", ["gsm8k", "math", "csqa"])
def test_code_in_completions_never_runs_and_never_scores(task_name: str, tmp_path: Path) -> None:
    task = get_task(task_name)
    problem = Problem(id=f"{task_name}-x", question="q", answer=GOLD[task_name], task=task_name)
    marker = tmp_path / "PWNED"
    for text in payloads(marker):
        pred = task.extract_answer(text)
        assert pred is None or isinstance(pred, str)
        assert task.reward(text, problem) == 0, text
        assert task.is_equivalent(pred or text, problem.answer) is False, text
        assert task.is_equivalent(text, problem.answer) is False, text
        # The gold side is data too: a poisoned gold never runs either.
        assert task.is_equivalent(GOLD[task_name], text) is False, text
    assert not marker.exists()


@pytest.mark.parametrize("task_name", ["gsm8k", "csqa", "math"])
@settings(max_examples=40, deadline=None)
@given(text=st.text(max_size=200))
def test_extractors_never_crash(task_name: str, text: str) -> None:
    task = get_task(task_name)
    pred = task.extract_answer(text)
    assert pred is None or (isinstance(pred, str) and pred.strip())


@settings(max_examples=25, deadline=None)
@given(
    pred=st.text(alphabet=st.sampled_from(list("0123456789+-*/^()[]{}\\.,=xyz frac sqrt")),
                 max_size=40),
)
def test_math_grading_is_total(pred: str) -> None:
    # Arbitrary LaTeX-ish junk grades to a bool (through the helper process), never raises.
    assert get_task("math").is_equivalent(pred, "\\frac{1}{2}") in (True, False)


@pytest.mark.parametrize("task_name", ["gsm8k", "csqa", "math"])
def test_degenerate_outputs_extract_fast(task_name: str) -> None:
    # Small models often repeat a token until the length limit; extraction stays linear.
    task = get_task(task_name)
    for text in ("\\boxed{" * 3000, "\\boxed{1}" * 3000, "answer is " * 5000, "1," * 20000):
        t0 = time.perf_counter()
        task.extract_answer(text)
        assert time.perf_counter() - t0 < 1.0
