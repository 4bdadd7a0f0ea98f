"""MATH: LaTeX answer extraction, math-verify equivalence, question-given order, row parsing.

The grader processes themselves (time bound, pool, clean-up) are in test_mathverify.py.
"""

from __future__ import annotations

import pytest

from malt.chain import GENERATOR
from malt.errors import MaltError
from malt.records import Problem
from malt.tasks import get_task
from malt.tasks.extract import last_boxed
from malt.tasks.math import (
    answer_order,
    extract_answer,
    gold_as_read,
    grade_many,
    is_equivalent,
    parse_row,
)
from malt.tasks.mathverify import GraderPool

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


# ---- several boxes, one answer ------------------------------------------------------------

# (model output, gold, reward): boxes listed one after another state one (set) answer; a
# box restated later is still that one value; a revised or hedged box is not a list.
SEVERAL_BOXES = [
    ("The solutions are $x = \\boxed{1}$ and $x = \\boxed{2}$.", "1, 2", 1),
    ("Both work, so the answer is $\\boxed{1}, \\boxed{2}$.", "\\{1,2\\}", 1),
    ("Therefore $x=\\boxed{-3}$ or $x=\\boxed{1}$.", "1,-3", 1),
    ("The roots are $\\boxed{2}$, $\\boxed{-1}$, and $\\boxed{4}$.", "-1, 2, 4", 1),
    ("So $k = \\boxed{\\frac{9}{4}}$ or $k = \\boxed{-\\frac{9}{4}}$.",
     "\\frac{9}{4}, -\\frac{9}{4}", 1),
    ("The angles are $\\boxed{45^\\circ}$ and $\\boxed{135^\\circ}$.", "45^\\circ, 135^\\circ", 1),
    ("\\[\\boxed{1} \\quad \\text{and} \\quad \\boxed{-3}\\]", "-3, 1", 1),
    ("So $\\boxed{1}$ and $\\boxed{2}$ are the roots.", "1, 2, 3", 0),  # one root missing
    ("It is either $\\boxed{3}$ or $\\boxed{4}$.", "3", 0),  # a hedge is not an answer
    ("We get $x = \\boxed{5}$. Therefore, the final answer is $\\boxed{5}$.", "5", 1),
    ("Hence $\\boxed{5}$, i.e. $\\boxed{5}$.", "5", 1),
    ("$\\boxed{7}$ $\\boxed{7}$", "7", 1),
    ("So $\\frac{1}{2} = \\boxed{\\frac12}$, or as a decimal, $\\boxed{0.5}$.", "\\frac{1}{2}", 1),
    ("First guess \\boxed{2}, but after checking, \\boxed{3}.", "2, 3", 0),
    ("First guess \\boxed{2}, but after checking, \\boxed{3}.", "3", 1),
    ("$a+b = \\boxed{3}$ and $ab = \\boxed{2}$, so $a^2+b^2 = \\boxed{5}$.", "5", 1),
]


@pytest.mark.parametrize(("text", "gold", "reward"), SEVERAL_BOXES)
def test_several_boxes_state_one_answer(text: str, gold: str, reward: int) -> None:
    p = Problem(id="math-x", question="q", answer=gold, task="math")
    assert TASK.reward(text, p) == reward


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The solutions are $x = \\boxed{1}$ and $x = \\boxed{2}$.", "1, 2"),
        ("$\\boxed{x=1}, \\boxed{x=-3}$", "x=1, x=-3"),
        ("So $\\boxed{5}$. Thus the answer is $\\boxed{5}$.", "5"),
        ("$\\boxed{4}$ \\text{ or } $\\boxed{4.0}$", "4, 4.0"),
        ("\\boxed{\\boxed{5}}", "5"),
        ("\\boxed{1}, \\boxed{}", "1"),
    ],
)
def test_several_boxes_extraction(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


# ---- a final answer without a box ---------------------------------------------------------

UNBOXED = [
    ("Adding the two parts gives 42.\nFinal Answer: 42", "42"),
    ("So the probability is 3/4.\n\nThe final answer is $\\frac{3}{4}$", "\\frac{3}{4}"),
    ("Checking both cases, the answer is 7.", "7"),
    ("**Final Answer:** $\\frac{3}{4}$", "\\frac{3}{4}"),
    ("**Final Answer**\n\n$$\\sqrt{5}$$", "\\sqrt{5}"),
    ("### Final answer: 12", "12"),
    ("Final Answer: The final answer is $(2, -3)$. I hope it is correct.", "(2, -3)"),
    ("The final answer is 4. Check: $2+2=4$.", "4"),
    ("So the answers are $1$ and $-3$.", "1, -3"),
    ("Answer: $x=2$ or $x=-2$", "x=2, x=-2"),
    ("Therefore, the answer is $\\$12.50$.", "\\$12.50"),
    ("The answer is \\(\\frac{\\pi}{2}\\).", "\\frac{\\pi}{2}"),
]


@pytest.mark.parametrize(("text", "expected"), UNBOXED)
def test_final_answer_without_a_box(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "gold", "reward"),
    [
        ("Final Answer: 42", "42", 1),
        ("The final answer is $\\frac{3}{4}$", "0.75", 1),
        ("the answer is 7.", "7", 1),
        ("**Final Answer:** $\\dfrac{1}{2}$", "\\frac12", 1),
        ("The solutions are $1$ and $-3$, so the final answer is $1, -3$.", "-3, 1", 1),
        ("Final Answer: 41", "42", 0),
    ],
)
def test_unboxed_final_answer_is_graded(text: str, gold: str, reward: int) -> None:
    assert TASK.reward(text, Problem(id="math-x", question="q", answer=gold, task="math")) == reward


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("We find $x=\\boxed{5}$. The final answer is 6.", "5"),
        ("Final Answer: 6\n\nActually, redoing the sum: $\\boxed{5}$", "5"),
        ("The answer is $3$... no: $$\\boxed{4}$$", "4"),
    ],
)
def test_a_box_wins_over_unboxed_text(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


# ---- order: tuples, intervals and sets by the question's wording --------------------------

QUESTIONS = [
    ("Express your answer as an ordered pair in the form $(A, B).$", True),
    ("Find the ordered triple $(p,q,r).$", True),
    ("Enter the ordered quadruple $(a,b,c,d)$.", True),
    ("Find $(x,y)$.", True),
    ("Convert $(1, -\\sqrt{3})$ to polar coordinates, in the form $(r,\\theta)$.", True),
    ("Find the coordinates of the point where the line meets the plane.", True),
    ("Solve for $a$: $|9+2a|<1$. Express your answer in interval notation.", True),
    ("What are the four integers in increasing order?", True),
    ("Find all possible values of $x$ and list them from least to greatest.", True),
    ("Enter all the solutions, separated by commas.", False),
    ("Find all real values of $t$ such that $t^2 = 4$.", False),
    ("Enter all possible values for the radius of the sphere, separated by commas "
     "(its center has integer coordinates).", False),
    ("Find the roots, in any order.", False),
    ("What is $\\frac{1}{2} + \\frac{1}{3}$?", None),
]


@pytest.mark.parametrize(("question", "ordered"), QUESTIONS)
def test_answer_order_from_the_question(question: str, ordered: bool | None) -> None:
    assert answer_order(question) is ordered


def math_problem(question: str, boxed: str) -> Problem:
    return parse_row({"problem": question, "solution": f"So it is $\\boxed{{{boxed}}}$."}, "q:1")


PAIR_Q = "Enter your answer as the ordered pair $(a,b).$"
TRIPLE_Q = "Enter the ordered triple $(x,y,z).$"
SET_Q = "Enter all the solutions, separated by commas."
INTERVAL_Q = "Express your answer in interval notation."
RANKED_Q = "Find all possible values of $x$ and list them from least to greatest."
ORDER = [
    # ordered pair / triple: order matters however the model writes it
    (PAIR_Q, "(1,-2)", "The pair is $\\boxed{(1,-2)}$.", 1),
    (PAIR_Q, "(1,-2)", "The pair is $\\boxed{(-2,1)}$.", 0),
    (PAIR_Q, "(1,-2)", "So $a = \\boxed{1}$ and $b = \\boxed{-2}$.", 1),
    (PAIR_Q, "(1,-2)", "So $b = \\boxed{-2}$ and $a = \\boxed{1}$.", 0),
    (PAIR_Q, "(1,-2)", "Final Answer: $(1, -2)$", 1),
    (PAIR_Q, "(1,-2)", "\\boxed{\\{-2, 1\\}}", 0),
    (PAIR_Q, "2, 3", "\\boxed{(2,3)}", 1),  # a plain list gold of an ordered question
    (PAIR_Q, "2, 3", "\\boxed{3, 2}", 0),
    (TRIPLE_Q, "(1,2,3)", "$\\boxed{\\left(1, 2, 3\\right)}$", 1),
    (TRIPLE_Q, "(1,2,3)", "$\\boxed{(3,2,1)}$", 0),
    (TRIPLE_Q, "(1,2,3)", "$\\boxed{1, 3, 2}$", 0),
    # all solutions: a set, in any order and in any notation
    (SET_Q, "-3, 1", "The solutions are $\\boxed{1, -3}$.", 1),
    (SET_Q, "-3, 1", "So $x = \\boxed{1}$ or $x = \\boxed{-3}$.", 1),
    (SET_Q, "-3, 1", "$\\boxed{\\{1, -3\\}}$", 1),
    (SET_Q, "-3, 1", "$\\boxed{x = 1 \\text{ or } x = -3}$", 1),
    (SET_Q, "-3, 1", "The solutions are $\\boxed{1}$.", 0),
    (SET_Q, "-3, 1", "The solutions are $\\boxed{1, 3}$.", 0),
    (SET_Q, "0, \\pi, 2 \\pi", "$\\boxed{2\\pi}$, $\\boxed{0}$ and $\\boxed{\\pi}$", 1),
    (SET_Q, "(1, 2, 3)", "\\boxed{3, 2, 1}", 1),  # a tuple gold of a set question
    # intervals keep their order and are not their endpoints; a listing order asked for is kept
    (INTERVAL_Q, "(-7, -2)", "$a \\in \\boxed{(-7,-2)}$", 1),
    (INTERVAL_Q, "(-7, -2)", "$\\boxed{a \\in (-7, -2)}$", 1),
    (INTERVAL_Q, "(-7, -2)", "The endpoints are $\\boxed{-7}$ and $\\boxed{-2}$.", 0),
    (INTERVAL_Q, "(-7, -2)", "$\\boxed{-7, -2}$", 0),
    (INTERVAL_Q, "(-\\infty, 0)", "$\\boxed{-\\infty}, \\boxed{0}$", 0),
    (INTERVAL_Q, "[-2, 7)", "$\\boxed{-2, 7}$", 0),
    (PAIR_Q, "(-7, -2)", "$\\boxed{-7, -2}$", 1),  # a pair, by the question
    (INTERVAL_Q, "[-2, 7)", "$\\boxed{[-2, 7)}$", 1),
    (INTERVAL_Q, "[-2, 7)", "$\\boxed{(-2, 7]}$", 0),
    (RANKED_Q, "-4, 4", "$\\boxed{-4, 4}$", 1),
    (RANKED_Q, "-4, 4", "$\\boxed{4, -4}$", 0),
]


@pytest.mark.parametrize(("question", "boxed", "text", "reward"), ORDER)
def test_order_follows_the_question(question: str, boxed: str, text: str, reward: int) -> None:
    assert TASK.reward(text, math_problem(question, boxed)) == reward


def test_parse_row_keeps_the_order_reading() -> None:
    pair = math_problem(PAIR_Q, "2, 3")
    assert pair.meta["ordered"] is True and pair.answer == "(2, 3)"
    assert pair.meta["boxed_answer"] == "2, 3"  # the solution's own box, as written
    interval = math_problem(INTERVAL_Q, "(-7, -2)")
    assert interval.meta["ordered"] is True and interval.answer == "x \\in (-7, -2)"
    roots = math_problem(SET_Q, "-3, 1")
    assert roots.meta["ordered"] is False and roots.answer == "-3, 1"
    assert "boxed_answer" not in roots.meta
    plain = math_problem("What is $1+1$?", "2")
    assert "ordered" not in plain.meta and plain.answer == "2"


@pytest.mark.parametrize(
    ("question", "solution", "gold", "reward"),
    [
        # MATH solutions that box each solution on its own: the gold is all of them
        ("Find all solutions to the equation $\\sqrt{3x+6}=x+2$.",
         "Therefore, the answers are $\\boxed{-2}$ and $\\boxed{1}$.", "-2, 1", 1),
        ("Enter all the solutions, separated by commas.",
         "Hence, $x$ must be $\\boxed{3}$ or $\\boxed{\\frac{2}{5}}$.", "3, \\frac{2}{5}", 1),
        ("Find all points where they intersect. List the points, separated by semicolons.",
         "The points are $\\boxed{(-2,18)}$ and $\\boxed{(8,38)}$.", "(-2,18), (8,38)", 1),
        # one value asked for: the last box, as before; a text boxing two values for it
        # (here the reference solution itself) states no single answer
        ("Find the coordinates of one of the foci. (Enter only one of the foci, not both.)",
         "Two points: $\\boxed{(10, 0)}$ and $\\boxed{(0,0)}.$ (Either is acceptable.)", "(0,0)", 0),
        ("What is $N$, in base 9?", "So $N = \\boxed{28}$, or $\\boxed{28_9}$.", "28_9", 1),
    ],
)
def test_gold_is_every_box_a_list_question_asks_for(
    question: str, solution: str, gold: str, reward: int
) -> None:
    p = parse_row({"problem": question, "solution": solution}, "q:1")
    assert p.answer == gold and TASK.reward(solution, p) == reward


@pytest.mark.parametrize(
    ("answer", "question", "written"),
    [
        ("2, -3", PAIR_Q, "(2, -3)"),
        ("(2, -3)", PAIR_Q, "(2, -3)"),
        ("(1,2), (3,4)", "Enter all ordered pairs $(x,y)$.", "(1,2), (3,4)"),  # pairs listed
        ("\\$15,\\!000", "Find the coordinates' total cost.", "\\$15,\\!000"),  # a number
        ("6, 8, \\text{and} 10", "List them in increasing order.", "6, 8, \\text{and} 10"),
        ("-4, 4", RANKED_Q, "(-4, 4)"),
        ("(1, 2, 3)", SET_Q, "\\{1, 2, 3\\}"),
        ("(2, 4)", "Find all values of $x$ with $x^2 < 6x - 8$.", "(2, 4)"),  # a pair or not
        ("(-7, -2)", INTERVAL_Q, "x \\in (-7, -2)"),
        ("[-7, -2)", INTERVAL_Q, "[-7, -2)"),  # already an interval by its brackets
        ("(-\\infty, 0) \\cup (0, \\infty)", INTERVAL_Q, "(-\\infty, 0) \\cup (0, \\infty)"),
        ("1, 2", "What are $f(1)$ and $f(2)$?", "1, 2"),
    ],
)
def test_gold_as_read(answer: str, question: str, written: str) -> None:
    assert gold_as_read(answer, question) == written


# ---- many checks at once ------------------------------------------------------------------


def test_grade_many_agrees_with_is_equivalent() -> None:
    pairs = [(pred, gold) for pred, gold, _ in EQUIVALENT] + [
        ("$\\boxed{1}$ and $\\boxed{2}$", "2, 1"), (None, "5"), ("5", 5), ("\\frac{1}{2}", "0.5"),
    ]
    pool = GraderPool(workers=2)
    try:
        verdicts = grade_many(pairs, pool=pool)
    finally:
        pool.close()
    assert verdicts == [is_equivalent(pred, gold) for pred, gold in pairs]
    assert verdicts[: len(EQUIVALENT)] == [expected for _, _, expected in EQUIVALENT]
    assert verdicts[-4:] == [True, False, False, True]
    assert grade_many([]) == []
