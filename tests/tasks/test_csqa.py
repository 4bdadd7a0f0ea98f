"""CommonsenseQA: choice-letter extraction, equivalence, row parsing and prompts."""

from __future__ import annotations

import pytest

from malt.chain import GENERATOR, REFINER
from malt.errors import MaltError
from malt.records import Problem
from malt.tasks import get_task
from malt.tasks.csqa import extract_answer, is_equivalent, parse_row

TASK = get_task("csqa")

ROW = {
    "answerKey": "A",
    "id": "1afa02df02c908a558b4036e80242fac",
    "question": {
        "question_concept": "revolving door",
        "choices": [
            {"label": "A", "text": "bank"},
            {"label": "B", "text": "library"},
            {"label": "C", "text": "department store"},
            {"label": "D", "text": "mall"},
            {"label": "E", "text": "new york"},
        ],
        "stem": "A revolving door is convenient for two direction travel, but it also serves "
        "as a security measure at a what?",
    },
}

EXTRACT = [
    ("Banks need security.\nFinal Answer: (A)", "A"),
    ("Final Answer: A", "A"),
    ("Final Answer: (c)", "C"),
    ("**Final Answer: (B)**", "B"),
    ("Final Answer: (A) bank", "A"),
    ("Final Answer: The answer is (E) mortuary.", "E"),
    ("So the answer is C: ground.", "C"),
    ("The answer is (B) library.", "B"),
    ("Answer: E", "E"),
    ("The correct option is D, because malls are busy.", "D"),
    ("Among the choices, A and B do not fit; the answer is C.", "C"),
    ("\\boxed{D}", "D"),
    ("Therefore $\\boxed{\\text{(D)}}$.", "D"),
    ("(A) bank: plausible. (B) library: no. So I choose (A).", "A"),
    ("(A) bank\n(B) library\n(C) department store\nFinal Answer: (C)", "C"),
    ("Let me think about each option.\nB", "B"),
    ("Thinking it over...\n(e)", "E"),
]


@pytest.mark.parametrize(("text", "expected"), EXTRACT)
def test_extract_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "None of the choices fit.", "I think the best answer is a library.", "Final Answer: F"],
)
def test_extract_answer_none(text: str) -> None:
    assert extract_answer(text) is None


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [("(c)", "C", True), ("C", "C", True), ("\\text{(C)}", "C", True), ("B", "C", False),
     ("", "C", False), ("F", "F", False)],
)
def test_is_equivalent(pred: str, gold: str, expected: bool) -> None:
    assert is_equivalent(pred, gold) is expected


def test_parse_row_shows_stem_and_lettered_choices() -> None:
    p = parse_row(ROW, "dev.jsonl:1")
    assert p.id == "csqa-1afa02df02c908a558b4036e80242fac"
    assert p.answer == "A" and p.task == "csqa"
    assert p.question.startswith("A revolving door is convenient")
    assert "(A) bank\n(B) library\n(C) department store\n(D) mall\n(E) new york" in p.question
    assert p.meta["choices"]["E"] == "new york" and p.meta["concept"] == "revolving door"


def test_parse_row_hub_layout_and_stable_id() -> None:
    q = ROW["question"]
    hub = {
        "question": q["stem"],
        "question_concept": "revolving door",
        "choices": {"label": [c["label"] for c in q["choices"]],
                    "text": [c["text"] for c in q["choices"]]},
        "answerKey": "A",
    }
    p = parse_row(hub, "tau/commonsense_qa[train] row 0")
    assert p.question == parse_row(ROW, "x").question
    assert p.id == parse_row(dict(hub), "elsewhere").id and p.id.startswith("csqa-")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"answerKey": None}, "'answerKey'"),
        ({"answerKey": "F"}, "'answerKey'"),
        ({"question": {"stem": "q"}}, "'choices'"),
        ({"question": {**ROW["question"], "stem": ""}}, "'question.stem'"),
        ({"question": {**ROW["question"], "choices": [{"label": "Z", "text": "x"}]}},
         r"'choices\[0\]'"),
    ],
)
def test_parse_row_bad_rows_name_place_and_field(change: dict, field: str) -> None:
    with pytest.raises(MaltError, match=rf"^dev\.jsonl:4: field {field}"):
        parse_row({**ROW, **change}, "dev.jsonl:4")


def test_reward_and_prompts() -> None:
    p = parse_row(ROW, "x")
    assert TASK.reward("A bank guards money.\nFinal Answer: (A)", p) == 1
    assert TASK.reward("Final Answer: (B)", p) == 0
    assert TASK.reward("I am unsure.", p) == 0
    g = TASK.messages(GENERATOR, p)
    assert "Final Answer: (<letter>)" in g[0]["content"] and "(A) bank" in g[1]["content"]
    r = TASK.messages(REFINER, p, answer="Final Answer: (B)", critique="Libraries lack it.")
    assert "Final Answer: (<letter>)" in r[0]["content"] and "Libraries lack it." in r[1]["content"]


def test_problem_gold_round_trips() -> None:
    p = Problem(id="csqa-x", question="q", answer="D", task="csqa")
    assert TASK.reward(f"Final Answer: ({p.answer})", p) == 1
