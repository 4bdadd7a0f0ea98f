"""GSM8K: numeric answer extraction, equivalence, row parsing and prompts."""

from __future__ import annotations

import pytest

from malt.chain import GENERATOR, REFINER, VERIFIER
from malt.errors import MaltError
from malt.records import Problem
from malt.tasks import get_task
from malt.tasks.gsm8k import extract_answer, is_equivalent, parse_row

TASK = get_task("gsm8k")

# (model output, the final answer a careful human grader reads from it)
EXTRACT = [
    # the G prompt's own format
    ("48 / 2 = 24 clips in May.\n48 + 24 = 72 clips in total.\nFinal Answer: 72", "72"),
    ("Final Answer: $1,200", "1200"),
    ("She pays $5.00 per hour.\nFinal Answer: $5.00", "5"),
    ("**Final Answer:** **$1,080**", "1080"),
    ("Final Answer:\n\n150", "150"),
    ("Final answer: 20 minutes", "20"),
    ("Final Answer: 25%", "25"),
    ("Final Answer: -7", "-7"),
    ("The temperature ends at −3 degrees.\nFinal Answer: −3", "-3"),
    ("Final Answer: 0.50", "0.5"),
    ("Final Answer: .5", "0.5"),
    ("Final Answer: 1,234.50", "1234.5"),
    ("Final Answer: 3/4", "0.75"),
    ("Final Answer: 10 - 4 = 6", "6"),
    ("Final answer: five", "5"),
    # other prompt styles
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "72"),
    ("#### 70 is wrong, let me redo it.\nFinal Answer: 72", "72"),
    ("Final Answer: The final answer is 18. I hope it is correct.", "18"),
    ("The answer is 42.", "42"),
    ("So the answer is: 3.5 hours", "3.5"),
    ("The answer to the question is 1,000,000 dollars.", "1000000"),
    ("Therefore, Janet makes $\\boxed{\\$18}$ every day.", "18"),
    ("The total is \\boxed{42}.", "42"),
    ("Answer: 64", "64"),
    # no marker: the last number written
    ("He has 5 apples, eats 2, so he has 3 apples left.", "3"),
    ("12 * 2 = 24 dollars per day, and over 7 days 24 * 7 = 168 dollars.", "168"),
    ("The water is H2O and there are 9 cups.", "9"),
]


@pytest.mark.parametrize(("text", "expected"), EXTRACT)
def test_extract_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


# Fractions are read as their value, or as no answer: never as their numerator (or denominator).
FRACTIONS = [
    ("So each friend gets $\\boxed{\\frac{3}{4}}$ of a pizza.", "0.75"),
    ("Final Answer: \\frac{3}{4}", "0.75"),
    ("Final Answer: $\\dfrac{1}{2}$", "0.5"),
    ("The answer is \\tfrac{5}{2}.", "2.5"),
    ("\\boxed{\\frac34}", "0.75"),
    ("\\boxed{\\frac{ 3 }{ 4 }}", "0.75"),
    ("\\boxed{-\\frac{3}{4}}", "-0.75"),
    ("\\boxed{\\frac{-3}{4}}", "-0.75"),
    ("\\boxed{2\\frac{1}{2}}", "2.5"),
    ("\\boxed{\\frac{1}{3}}", "1/3"),
    ("\\boxed{\\frac{1,200}{4}}", "300"),
    ("Each friend gets \\frac{3}{4} of the pizza.", "0.75"),
    ("Final Answer: 3/4", "0.75"),
    ("Final Answer: 12 / 8", "1.5"),
    ("He sleeps 6 hours and increases that by 1/3.", "1/3"),
    ("He earns $15/hour.\nFinal Answer: $15/hour", "15"),
    ("\\boxed{\\frac{\\pi}{2}}", None),
    ("\\boxed{\\frac{3}{x}}", None),
    ("\\boxed{\\frac{3}{0}}", None),
    ("The ratio is \\frac{a}{4}.", None),
    ("Final Answer: 3/1.5", None),
    ("Final Answer: 3/(4)", None),
    ("Final Answer: 3 / 1.5", None),
]


@pytest.mark.parametrize(("text", "expected"), FRACTIONS)
def test_fractions_are_read_as_their_value_or_not_at_all(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_reward_of_a_boxed_fraction_is_its_value() -> None:
    p = Problem(id="gsm8k-x", question="q", answer="3", task="gsm8k")
    assert TASK.reward("\\boxed{\\frac{3}{4}}", p) == 0
    assert TASK.reward("\\boxed{\\frac{12}{4}}", p) == 1


TOO_LONG = {
    "marked": "Final Answer: " + "9" * 5000,
    "hashes": "#### " + "9" * 5000,
    "boxed": "\\boxed{" + "9" * 5000 + "}",
    "last number": "The total is " + "9" * 5000 + " apples.",
    "cut at the span's end": "Final Answer: " + "9" * 300,  # its first 200 digits are not it
    "denominator": "Final Answer: 1/" + "3" * 5000,
}


@pytest.mark.parametrize("text", TOO_LONG.values(), ids=TOO_LONG.keys())
def test_a_number_too_long_to_be_an_answer_is_no_answer(text: str) -> None:
    assert extract_answer(text) is None
    assert is_equivalent(text, "9") is False


def test_a_marked_span_never_ends_inside_a_number() -> None:
    # The marked span is cut near 200 characters; a number is read whole or not at all.
    text = "Final Answer: " + "a" * 195 + " 123456789"
    assert extract_answer(text) == "123456789"


@pytest.mark.parametrize("text", ["", "I do not know.", "Final Answer: none of them"])
def test_extract_answer_none(text: str) -> None:
    assert extract_answer(text) is None


EQUIVALENT = [
    ("5.00", "5", True),
    ("1,200", "1200", True),
    ("$1200", "1200", True),
    ("0.5", "1/2", True),
    ("-3", "-3", True),
    ("-3", "3", False),
    ("7", "8", False),
    ("0.33", "1/3", False),
    ("", "5", False),
    ("abc", "5", False),
    ("\\frac{1}{2}", "1", False),
    ("\\frac{1}{2}", "0.5", True),
    ("\\dfrac{3}{4}", "3", False),
    ("3", "\\frac{3}{4}", False),
    ("\\frac{\\pi}{2}", "2", False),
    ("3/1.5", "3", False),
]


@pytest.mark.parametrize(("pred", "gold", "expected"), EQUIVALENT)
def test_is_equivalent(pred: str, gold: str, expected: bool) -> None:
    assert is_equivalent(pred, gold) is expected


def test_reward_reads_the_marked_answer() -> None:
    p = Problem(id="gsm8k-x", question="q", answer="1200", task="gsm8k")
    assert TASK.reward("She pays 2 * $600.\nFinal Answer: $1,200.00", p) == 1
    assert TASK.reward("She pays 1,200 - 100.\nFinal Answer: 1,100", p) == 0
    assert TASK.reward("I cannot tell.", p) == 0


def test_parse_row_keeps_gold_and_rationale() -> None:
    row = {"question": " How many? ", "answer": "3 + 4 = <<3+4=7>>7 and 1,000 more\n#### 1,007"}
    p = parse_row(row, "f.jsonl:3")
    assert (p.answer, p.question, p.task) == ("1007", "How many?", "gsm8k")
    assert p.meta["rationale"] == "3 + 4 = <<3+4=7>>7 and 1,000 more"
    assert p.id == parse_row(dict(row), "other:1").id  # content-derived, stable
    assert parse_row({**row, "id": 17}, "f:1").id == "gsm8k-17"


def test_parse_row_refuses_a_gold_answer_too_long_to_grade() -> None:
    with pytest.raises(MaltError, match=r"^f\.jsonl:2: field 'answer'"):
        parse_row({"question": "q", "answer": "#### " + "9" * 5000}, "f.jsonl:2")


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"answer": "#### 3"}, "'question'"),
        ({"question": "  ", "answer": "#### 3"}, "'question'"),
        ({"question": "q"}, "'answer'"),
        ({"question": "q", "answer": "it is 3"}, "'answer'"),
        ({"question": "q", "answer": "#### many"}, "'answer'"),
    ],
)
def test_parse_row_bad_rows_name_place_and_field(row: dict, field: str) -> None:
    with pytest.raises(MaltError, match=rf"^data\.jsonl:7: field {field}"):
        parse_row(row, "data.jsonl:7")


def test_load_reports_file_and_line(tmp_path) -> None:
    path = tmp_path / "g.jsonl"
    path.write_text('{"question": "a", "answer": "#### 1"}\n{"question": "b", "answer": "x"}\n')
    with pytest.raises(MaltError, match=r"g\.jsonl:2: field 'answer'"):
        TASK.load(str(path))


def test_role_messages_carry_marker_and_context() -> None:
    p = Problem(id="gsm8k-x", question="What is 2+2?", answer="4", task="gsm8k")
    g = TASK.messages(GENERATOR, p)
    assert [m["role"] for m in g] == ["system", "user"]
    assert "Final Answer: <number>" in g[0]["content"] and "step by step" in g[0]["content"]
    assert g[1]["content"] == "What is 2+2?"
    v = TASK.messages(VERIFIER, p, answer="2+2=5\nFinal Answer: 5")
    assert "Final Answer: 5" in v[1]["content"] and "What is 2+2?" in v[1]["content"]
    assert "critique" in v[0]["content"].lower()
    r = TASK.messages(REFINER, p, answer="Final Answer: 5", critique="2+2 is 4, not 5.")
    assert "2+2 is 4, not 5." in r[1]["content"] and "Final Answer: <number>" in r[0]["content"]
