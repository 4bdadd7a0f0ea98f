"""The arith task: seeded generation, disjoint splits, role formats, extraction and grading."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from malt.chain import GENERATOR, REFINER, VERIFIER
from malt.errors import MaltError
from malt.tasks import get_task
from malt.tasks.arith import (
    HIGH,
    LOW,
    TASK,
    Arith,
    answer_view,
    critique_answer,
    critique_flags,
    extract_answer,
    generate,
    parse_question,
    parse_states,
    render_check,
    render_keep,
    render_solution,
    sample_problem,
    split_of,
    verdict_view,
    write_split,
)


def test_registered():
    assert get_task("arith") is TASK


def test_generate_is_deterministic_in_seed():
    a, b = generate(200, "train", seed=3), generate(200, "train", seed=3)
    assert a == b
    assert generate(200, "train", seed=4) != a
    assert len({p.question for p in a}) == 200


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_splits_never_overlap(seed):
    train = {p.question for p in generate(2000, "train", seed)}
    test = {p.question for p in generate(500, "test", seed)}
    other_seed_test = {p.question for p in generate(500, "test", seed + 100)}
    assert not train & test
    assert not train & other_seed_test
    assert all(split_of(q) == "test" for q in test)


def test_test_share_is_about_a_fifth():
    qs = [sample_problem(random.Random(i)).question for i in range(5000)]
    share = sum(split_of(q) == "test" for q in qs) / len(qs)
    assert 0.17 < share < 0.23


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**9))
def test_sampled_problems_are_well_formed(seed):
    p = sample_problem(random.Random(seed))
    assert len(p.steps) == 3
    assert len(set(p.steps)) == len(p.steps)  # no step repeated: "next step" is unambiguous
    assert all(LOW <= v <= HIGH for v in p.values())
    assert parse_question(p.question) == p
    assert split_of(p.question) == split_of(p.question)


def test_solution_and_critique_formats():
    p = Arith(47, (("+", 8), ("-", 3), ("+", 5)))
    assert p.question == "47+8-3+5" and p.answer == 57
    good = render_solution(p.start, p.steps, p.values())
    assert good.splitlines() == [" 47+8-3+5", "   55-3+5", "     52+5", "       57", "Answer: 57"]
    bad = render_solution(p.start, p.steps, [55, 53, 58])  # slip in step 2, chained after
    assert [v for v, _ in parse_states(bad)] == [47, 55, 53, 58]
    assert extract_answer(bad) == "58"
    # Every line has the same width, so each step sits right below the line it came from.
    assert len({len(line) for line in good.splitlines()[:-1]}) == 1
    # V re-derives in G's own geometry, spells its answer out, writes G's answer under it
    # digit by digit with a mark after each, then states its verdict.
    crit = render_check(p, p.values(), "58")
    assert crit.splitlines() == [*good.splitlines()[:-1], "      5 7", "G     5=8x", "         no"]
    # Each of G's digits sits straight under V's digit of the same place (one line up, same
    # column), and the verdict's first letter under the last mark.
    lines = crit.splitlines()
    for v_col in (6, 8):
        assert lines[-3][v_col] in "57" and lines[-2][v_col] in "58"
    assert lines[-1].index("n") == lines[-2].rindex("x")
    assert critique_flags(crit) is True and critique_answer(crit) == "57"
    agree = render_check(p, p.values(), "57")
    assert agree.endswith("G     5=7=\n         ok") and critique_flags(agree) is False
    # Marks are independent: each says whether its own digit matches.
    assert render_check(p, [55, 52, 47], "57").endswith("G     5x7=\n         no")
    # V slipped itself: it disagrees with a right G answer and states its own (wrong) one.
    slipped = render_check(p, [55, 53, 58], "57")
    assert critique_flags(slipped) is True and critique_answer(slipped) == "58"
    assert render_check(p, p.values(), "none").endswith("no")
    assert render_keep("57") == "Answer: 57" and extract_answer(render_keep("57")) == "57"


def test_later_roles_see_answer_and_verdict_only():
    p = TASK.parse_row({"question": "47+8-3+5", "answer": "57"}, "x:1")
    g_text = render_solution(47, (("+", 8), ("-", 3), ("+", 5)), [55, 53, 58])
    crit = render_check(parse_question(p.question), [55, 52, 57], "58")
    v = TASK.messages(VERIFIER, p, answer=g_text)
    r = TASK.messages(REFINER, p, answer=g_text, critique=crit)
    assert v[1]["content"] == "A: 58\nQ: 47+8-3+5"  # G's answer, not its working
    assert r[1]["content"] == "A: 58\nC: Wrong.\nQ: 47+8-3+5"  # V's verdict, not its working
    # The question ends every prompt: each role restates it at the same distance as G does.
    assert all(m[1]["content"].endswith("47+8-3+5") for m in (v, r, TASK.messages(GENERATOR, p)))
    assert answer_view("no answer here") == "none" and verdict_view("G      5") == "none"
    assert TASK.critique_answer(crit) == "57"


@pytest.mark.parametrize(
    ("text", "flag", "own"),
    [
        ("       57\nG      57\n       ==\n       ok", False, "57"),
        ("       57\nG      58\n       =x\n       no", True, "57"),
        ("       57\nG      58\n       =x\n       ok", False, "57"),  # inconsistent, still read
        ("ok\nno", True, None),  # the last verdict counts
        ("       57\nG      58", None, "57"),  # cut before the verdict
        ("     52+5\n       no", True, None),  # a line with steps left states no answer
        ("It is ok", None, None),  # a verdict is a whole line
        ("9" * 5000 + "\nno", True, None),  # absurd numbers are no answer
        ("", None, None),
    ],
)
def test_critique_reading_table(text, flag, own):
    assert critique_flags(text) is flag
    assert critique_answer(text) == own


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("47+8=55\nAnswer: 55", "55"),
        ("Answer:57", "57"),
        ("Answer: 057", "57"),
        ("Answer: -3", "-3"),
        ("Answer: 12\nAnswer: 13", "13"),
        ("Answer: 12.5", None),  # not an integer
        ("Answer: 12.", "12"),
        ("47+8=55", None),
        ("answer: 55", None),
        ("Answer: ", None),
        ("", None),
        ("Answer: " + "9" * 5000, None),  # past int()'s digit limit: no answer, no error
    ],
)
def test_extraction_table(text, expected):
    assert extract_answer(text) == expected


def test_grading_is_exact(tmp_path):
    path = tmp_path / "arith.jsonl"
    assert write_split(path, 20, "test", seed=0) == 20
    problems = TASK.load(str(path))
    assert [p.question for p in problems] == [p.question for p in generate(20, "test", 0)]
    for p in problems:
        steps = parse_question(p.question)
        right = render_solution(steps.start, steps.steps, steps.values())
        wrong = render_solution(steps.start, steps.steps, [*steps.values()[:-1], steps.answer + 1])
        assert TASK.reward(right, p) == 1
        assert TASK.reward(wrong, p) == 0
        assert TASK.reward(right.replace("Answer:", "So"), p) == 0


def test_role_messages_are_short_and_carry_the_inputs():
    p = TASK.parse_row({"question": "47+8-3+5", "answer": "57"}, "x:1")
    g = TASK.messages(GENERATOR, p)
    v = TASK.messages(VERIFIER, p, answer="47+8=55\nAnswer: 55")
    r = TASK.messages(REFINER, p, answer="Answer: 55", critique="        no")
    assert g[1]["content"] == "47+8-3+5"
    assert "55" in v[1]["content"] and "47+8-3+5" in v[1]["content"]
    assert r[1]["content"].index("55") < r[1]["content"].index("Wrong.")
    assert r[1]["content"].endswith("47+8-3+5")
    assert all(len(m[0]["content"]) <= 10 for m in (g, v, r))  # every char is a token


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"question": "47+8", "answer": "56"}, "'answer' is 56"),
        ({"question": "47*8", "answer": "376"}, "'question' is not an arith problem"),
        ({"question": "47+8", "answer": "x"}, "'answer' must be an integer"),
        ({"answer": "55"}, "'question' is missing"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, row, field):
    path = tmp_path / "bad.jsonl"
    good = {"question": "10+1+2", "answer": "13"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(MaltError, match=rf"bad.jsonl:2: field {field}"):
        TASK.load(str(path))
