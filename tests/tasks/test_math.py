"""MATH: LaTeX answer extraction, math-verify equivalence, the time bound, row parsing."""

from __future__ import annotations

import os
import threading
import time

import pytest

from malt.errors import MaltError
from malt.records import GENERATOR, Problem
from malt.tasks import get_task
from malt.tasks.extract import last_boxed
from malt.tasks.math import extract_answer, is_equivalent, parse_row
from malt.tasks.mathverify import MathVerifier

TASK = get_task("math")

EXTRACT = [
    ("So $a+b=-3+3=\\boxed{0}$.", "0"),
    ("Hence $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("$\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("It follows that $x^2 + y^2 = \\boxed 9$.", "9"),
    ("\\fbox{5}", "5"),
    ("First guess \\boxed{2}, but after checking, \\boxed{3}.", "3"),
    ("\\[\\boxed{\\{1, 2\\}}\\]", "\\{1, 2\\}"),
    ("The solutions are $\\boxed{\\text{(C)},}$", "\\text{(C)}"),
    ("Final Answer: The final answer is $\\frac12$. I hope it is correct.", "\\frac12"),
    ("The answer is $\\frac12$", "\\frac12"),
    ("Final Answer: $x = 5$", "x = 5"),
    ("The answer is \\(\\sqrt{2}\\).", "\\sqrt{2}"),
    ("Answer: 1/2.", "1/2"),
    ("Answer: \\dfrac{3}{4}", "\\dfrac{3}{4}"),
    ("So the answer is 5 apples.", "5 apples"),
]


@pytest.mark.parametrize(("text", "expected"), EXTRACT)
def test_extract_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text", ["", "I could not solve it.", "so $\\boxed{1 + {2}$ hmm"])
def test_extract_answer_none(text: str) -> None:
    assert extract_answer(text) is None


def test_last_boxed_keeps_nested_braces() -> None:
    assert last_boxed("\\boxed{\\frac{\\sqrt{3}}{2}}") == "\\frac{\\sqrt{3}}{2}"
    assert last_boxed("$\\boxed{\\{1,2\\}}$") == "\\{1,2\\}"


EQUIVALENT = [
    # fractions and decimals
    ("\\frac{1}{2}", "0.5", True),
    ("1/2", "\\frac12", True),
    ("\\dfrac{1}{2}", "\\frac{1}{2}", True),
    ("\\tfrac{3}{4}", "0.75", True),
    ("1.5", "\\frac32", True),
    ("-\\frac{1}{3}", "\\frac{-1}{3}", True),
    ("\\frac{1}{3}", "0.3", False),
    # intervals and sets
    ("(1, 2]", "(1,2]", True),
    ("[1,2]", "(1,2]", False),
    ("(-\\infty, 3)", "(-\\infty,3)", True),
    ("\\{1,2,3\\}", "\\{3,2,1\\}", True),
    ("\\{1,2\\}", "\\{1,3\\}", False),
    # roots, pi, degrees, percent
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", True),
    ("\\sqrt{3}", "\\sqrt{2}", False),
    ("\\pi/2", "\\frac{\\pi}{2}", True),
    ("2\\pi", "2 \\pi", True),
    ("\\pi", "3", False),
    ("90^\\circ", "90", True),
    ("45^{\\circ}", "45", True),
    ("10\\%", "10", True),
    # text answers, equations, expressions, tuples, complex numbers
    ("\\text{(B)}", "\\text{(B)}", True),
    ("(B)", "\\text{(B)}", True),
    ("\\text{(C)}", "\\text{(B)}", False),
    ("\\text{Monday}", "\\text{Tuesday}", False),
    ("x=5", "5", True),
    ("5", "4", False),
    ("x^2+2x+1", "(x+1)^2", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True),
    ("8+4i", "4i+8", True),
    ("5 apples", "5", True),
    ("5 \\text{ cm}", "5", True),
    ("", "5", False),
]


@pytest.mark.parametrize(("pred", "gold", "expected"), EQUIVALENT)
def test_is_equivalent(pred: str, gold: str, expected: bool) -> None:
    assert is_equivalent(pred, gold) is expected


def test_reward_with_and_without_box() -> None:
    p = Problem(id="math-x", question="q", answer="\\frac{1}{2}", task="math")
    assert TASK.reward("The answer is $\\frac12$.", p) == 1
    assert TASK.reward("So we get $\\boxed{0.5}$.", p) == 1
    assert TASK.reward("So we get $\\boxed{\\frac{1}{3}}$.", p) == 0
    assert TASK.reward("No idea.", p) == 0


def test_empty_gold_never_grades_correct() -> None:
    p = Problem(id="math-x", question="q", answer="", task="math")
    assert TASK.reward("\\boxed{}", p) == 0 and TASK.reward("\\boxed{0}", p) == 0


def test_hard_time_bound_from_a_worker_thread() -> None:
    # math-verify's own timeouts use signal.alarm, which fails outside the main thread;
    # the helper process must still bound the call and recover for the next one.
    verifier = MathVerifier(timeout_s=1.0)
    try:
        assert verifier.equivalent("1", "1.0")  # start the helper outside the timed part
        result: dict = {}

        def work() -> None:
            t0 = time.perf_counter()
            result["slow"] = verifier.equivalent("(10^{100})!", "1")
            result["seconds"] = time.perf_counter() - t0
            result["after"] = verifier.equivalent("\\frac{2}{4}", "0.5")

        thread = threading.Thread(target=work)
        thread.start()
        thread.join(timeout=60)
        assert result["slow"] is False and result["seconds"] < 3.0
        assert result["after"] is True and verifier.restarts == 1
    finally:
        verifier.close()


def test_parse_row_math500() -> None:
    row = {
        "problem": "Convert the point $(0,3)$ to polar coordinates.",
        "solution": "So $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$",
        "answer": "\\left( 3, \\frac{\\pi}{2} \\right)",
        "subject": "Precalculus", "level": 2, "unique_id": "test/precalculus/807.json",
    }
    p = parse_row(row, "m.jsonl:1")
    assert p.id == "math-test-precalculus-807"
    assert p.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert p.meta["reference_answer"] == row["answer"] and p.meta["level"] == 2
    assert p.meta["subject"] == "Precalculus" and p.meta["unique_id"] == row["unique_id"]
    plain = {"problem": "1+1?", "solution": "It is \\boxed{2}.", "level": "Level 1",
             "type": "Algebra"}
    q = parse_row(plain, "t.jsonl:2")
    assert q.id.startswith("math-") and q.id == parse_row(dict(plain), "x").id
    assert q.meta["type"] == "Algebra" and q.answer == "2"


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"solution": "\\boxed{1}"}, "'problem'"),
        ({"problem": "", "solution": "\\boxed{1}"}, "'problem'"),
        ({"problem": "p"}, "'solution'"),
        ({"problem": "p", "solution": "the answer is one"}, "'solution'"),
    ],
)
def test_parse_row_bad_rows_name_place_and_field(row: dict, field: str) -> None:
    with pytest.raises(MaltError, match=rf"^train\.jsonl:9: field {field}"):
        parse_row(row, "train.jsonl:9")


def test_generator_prompt_asks_for_a_box() -> None:
    p = Problem(id="math-x", question="What is $1+1$?", answer="2", task="math")
    assert "\\boxed{<answer>}" in TASK.messages(GENERATOR, p)[0]["content"]


def test_helper_that_cannot_start_is_one_clear_error(monkeypatch) -> None:
    monkeypatch.setattr("sys.executable", "false")  # a program that exits at once
    with pytest.raises(MaltError, match="could not start the math-verify grader"):
        MathVerifier().equivalent("1", "2")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_process_gets_its_own_helper() -> None:
    verifier = MathVerifier()
    try:
        assert verifier.equivalent("0.5", "\\frac12")
        pid = os.fork()
        if pid == 0:  # child: must not talk over the parent's pipes
            os._exit(0 if verifier.equivalent("\\frac{2}{4}", "0.5") else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert verifier.equivalent("2\\sqrt{2}", "\\sqrt{8}") and verifier.restarts == 0
    finally:
        verifier.close()
