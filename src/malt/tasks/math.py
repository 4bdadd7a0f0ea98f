r"""MATH (Hendrycks) and MATH-500: competition problems with a LaTeX final answer.

Rows are `{"problem", "solution", ...}`; the gold answer is the last `\boxed{}`/`\fbox{}` of
the solution (MATH-500's `answer` field is kept in meta). Equivalence goes through
math-verify (LaTeX -> SymPy) in a pool of helper processes with a hard time bound per check,
after a cheap exact match on lightly normalised strings. An answer longer than
`MAX_ANSWER_CHARS` is unparseable: it is never sent to math-verify (nor kept in its cache).

Order: math-verify reads order from the gold's notation: a tuple `(1, 2)` is compared in
order, a list `1, 2` or set `\{1, 2\}` as a set; an interval is never a list of values. The
question's wording decides where it can be told (`answer_order`, kept as `meta["ordered"]`),
and `parse_row` writes the gold in the notation that says it (`gold_as_read`; the box as
written stays in `meta["boxed_answer"]`), so every grader, which sees only (pred, gold)
strings, follows it. Several answers boxed one after another (`$\boxed{1}$ and
$\boxed{-3}$`) are one list; a box restated later is still one answer.

    from malt.tasks.math import grade_many      # many checks at once, spread over the pool
    verdicts = grade_many([(pred, problem.answer) for pred, problem in todo])
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from malt.errors import MaltError
from malt.records import Problem
from malt.tasks.base import Task, field_str, stable_id
from malt.tasks.extract import after_last, boxed_spans, last_boxed, safe_id
from malt.tasks.grading import Unparseable, total_equivalence, total_extractor
from malt.tasks.mathverify import GraderPool, shared_pool
from malt.tasks.prompts import role_prompts

NAME = "math"
MAX_ANSWER_CHARS = 1000  # the longest gold answer in MATH has 159 characters
MAX_CACHED = 100_000  # math-verify verdicts kept per process

_FINAL = re.compile(r"(?i)final\s+answers?\s*[*_]*\s*(?:is|are)?\s*[:：]?")
_ANSWER = re.compile(r"(?i)\banswers?\b(?:[^\n]{0,40}?\b(?:is|are)\b|\s*[:=])")
# Inline math in a marked span: $$...$$, $...$ (an escaped \$ stays inside), \(...\), \[...\].
_INLINE = re.compile(
    r"\$\$(.+?)\$\$|(?<!\\)\$((?:\\.|[^$\\])+)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S
)
_LEAD = re.compile(r"^[\s*_#:}]+")  # markdown and punctuation a marker leaves: "**Final Answer:**"
_STOP = re.compile(r"\.(?:\s|$)")  # a full stop ends the sentence that states the answer
# What may stand between the parts of one listed answer: "$\boxed{1}$, $\boxed{2}$ and
# $x = \boxed{3}$", "$1$ or $-3$". Anything else ("but then", "so") starts a new statement.
_LIST_GAP = re.compile(
    r"(?:\s|[$,;&]|\\[()\[\],;: ]|\\q?quad\b|\\text(?:rm)?\{\s*(?:and|or|,)?\s*\}|\band\b|\bor\b"
    r"|(?:\\?[A-Za-z]+)(?:_\{?\w{1,3}\}?)?\s*=)*"
)
_MAX_GAP = 80
# Spacing and sizing commands that never change an answer's meaning.
_NOISE = re.compile(r"\\left|\\right|\\[,;:! ]|\\displaystyle|\s+|\^\{?\\circ\}?|\\%|%|\\?\$")

# Question wording that fixes the reading of a list answer (see `answer_order`).
_SYMBOL = r"(?:\\[A-Za-z]+|[A-Za-z])(?:_\{?\w+\}?)?"
_TUPLE_WORDS = re.compile(
    r"(?i)\bordered\s+(?:pair|triple|quadruple|list|(?:\$?[nk]\$?-)?tuple)s?\b|\binterval\b"
    r"|\$\s*(?:\\left)?\(\s*" + _SYMBOL + r"\s*(?:,\s*" + _SYMBOL + r"\s*)+(?:\\right)?\)\s*\$"
)
_ORDER_WORDS = re.compile(
    r"(?i)\b(?:in\s+(?:increasing|decreasing|ascending|descending)\s+order|from\s+(?:least|smallest|"
    r"lowest|greatest|largest|highest)\s+to\s+(?:least|smallest|lowest|greatest|largest|highest))\b"
)
_LIST_WORDS = re.compile(
    r"(?i)\bseparated\s+by\s+(?:commas?|semicolons?)\b|\bin\s+(?:any|either)\s+order\b"
    r"|\blist\s+(?:them|all|the)\b"
)
_ALL_WORDS = re.compile(
    r"(?i)\ball\s+(?:of\s+)?(?:the\s+)?(?:[\w$-]+\s+){0,3}?"
    r"(?:solutions?|values?|roots?|zeros?|numbers?|integers?|angles?|points?)\b"
)
_ONE_OF = re.compile(r"(?i)\bone\s+of\b|\beither\s+of\b|\bnot\s+both\b|\bonly\s+one\b")
_COORDINATES = re.compile(r"(?i)\bcoordinates\b")
_INTERVAL_WORDS = re.compile(r"(?i)\binterval\b")
_IN = re.compile(r"^\s*[A-Za-z]\s*\\in\s*")  # "x \in [-2, 7]": the interval itself follows
_TUPLE_GOLD = re.compile(r"^(?:\\left)?\((.*?)(?:\\right)?\)$", re.S)
_THOUSANDS = re.compile(r"^\\?\$?\d{1,3}(?:,(?:\\!|\\,|\s)*\d{3})+(?:\.\d+)?$")


def _clean(answer: str) -> str | None:
    """Trim an extracted answer: outer `$`, whitespace and trailing punctuation."""
    answer = answer.strip().strip("$").strip()
    answer = answer.rstrip(".,;:").strip()  # not a regex: "[.,;:]+$" is quadratic in the dots
    return answer or None


def _listed(parts: Iterable[str | None]) -> str | None:
    """Parts stated one after another as one answer: restatements dropped, the rest a list."""
    kept: dict[str, str] = {}
    for part in parts:
        if part is not None:
            kept.setdefault(normalize(part), part)
    return ", ".join(kept.values()) or None


def _last_boxes(text: str, spans: list[tuple[int, int, str]] | None = None) -> str | None:
    r"""The last box, joined with the boxes right before it that list the same answer.

    >>> _last_boxes(r"The roots are $x=\boxed{1}$ and $x = \boxed{-3}$.")
    '1, -3'
    >>> _last_boxes(r"First \boxed{2}, but after checking, \boxed{3}."), _last_boxes(r"\boxed{5}, \boxed{5}")
    ('3', '5')
    """
    spans = boxed_spans(text) if spans is None else spans
    if not spans:
        return None
    group = [spans[-1]]
    for span in reversed(spans[:-1]):
        gap_start, gap_end = span[1], group[-1][0]
        if not 0 <= gap_end - gap_start <= _MAX_GAP:
            break
        if not _LIST_GAP.fullmatch(text[gap_start:gap_end]):
            break
        group.append(span)
        if len(group) * 2 > MAX_ANSWER_CHARS:  # a degenerate repetition: unparseable anyway
            break
    return _listed(_clean(contents) for _, _, contents in reversed(group))


def _marked_span(span: str) -> str | None:
    r"""The answer in a marked span's first sentence: its (listed) inline math, else its text.

    >>> _marked_span(r"is $\frac{1}{2}$. I hope it is correct.")
    '\\frac{1}{2}'
    >>> _marked_span("1/2. So we are done."), _marked_span("** 42"), _marked_span("are $1$ and $-3$.")
    ('1/2', '42', '1, -3')
    >>> _marked_span(r"4. Check: $2+2=4$.")
    '4'
    """
    span = _LEAD.sub("", span)
    stop = _STOP.search(span)
    end = stop.start() if stop else len(span)
    parts: list[str | None] = []
    pos = None
    for math in _INLINE.finditer(span):
        if pos is None and math.start() >= end:
            break
        if pos is not None and not _LIST_GAP.fullmatch(span[pos : math.start()]):
            break
        parts.append(_clean(next(g for g in math.groups() if g is not None)))
        pos = math.end()
    if pos is not None:
        return _listed(parts)
    return _clean(span[:end])


@total_extractor
def extract_answer(text: str) -> str | None:
    r"""The final answer of a model output as LaTeX (without `$`/`\boxed{}`), or None.

    Takes the last \boxed{} or \fbox{} (with the boxes listed right before it); without
    one, the answer after "Final Answer:" or "the answer is". A box always wins. Raises
    Unparseable for an answer longer than MAX_ANSWER_CHARS.

    >>> extract_answer(r"Hence $x = \boxed{\dfrac{\sqrt{3}}{2}}$.")
    '\\dfrac{\\sqrt{3}}{2}'
    >>> extract_answer(r"Final Answer: The final answer is $(3, \frac{\pi}{2})$. I hope so.")
    '(3, \\frac{\\pi}{2})'
    >>> extract_answer(r"The answer is $\frac12$"), extract_answer(r"$\boxed{1}$, $\boxed{2}$")
    ('\\frac12', '1, 2')
    >>> extract_answer("I could not solve it.") is None
    True
    """
    spans = boxed_spans(text)
    if spans:
        return _gradable(_last_boxes(text, spans))
    for marker in (_FINAL, _ANSWER):
        span = after_last(marker, text, max_chars=400)
        if span:
            return _gradable(_marked_span(span))
    return None


def _gradable(answer: str | None) -> str | None:
    if answer is not None and len(answer) > MAX_ANSWER_CHARS:
        raise Unparseable(f"an answer of {len(answer)} characters")
    return answer


def normalize(answer: str) -> str:
    r"""A light canonical form used only for a fast exact match before math-verify.

    >>> normalize(r"\left( 3, \dfrac{\pi}{2} \right)"), normalize(r"90^\circ"), normalize("$5$.")
    ('(3,\\frac{\\pi}{2})', '90', '5')
    """
    answer = _NOISE.sub("", answer).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return answer.rstrip(".")


@total_equivalence
def is_equivalent(pred: str, gold: str) -> bool:
    r"""Whether `pred` states the same mathematical answer as `gold` (math-verify).

    >>> is_equivalent(r"\dfrac{1}{2}", "0.5"), is_equivalent(r"\{1,2\}", r"\{2,1\}")
    (True, True)
    >>> is_equivalent("3", "4"), is_equivalent(r"The answer is $\frac12$.", r"$\boxed{0.5}$")
    (False, True)
    >>> is_equivalent("2, 1", "(1, 2)"), is_equivalent("2, 1", "1, 2")
    (False, True)
    """
    pair = _to_verify(pred, gold)
    if isinstance(pair, bool):
        return pair
    ok = _verdicts.get(pair)
    if ok is None:
        ok = shared_pool().equivalent(*pair)
        _remember(pair, ok)
    return ok


def grade_many(pairs: Iterable[tuple[object, object]], pool: GraderPool | None = None) -> list[bool]:
    r"""`is_equivalent` of every (pred, gold) pair; the math-verify checks run on the pool.

    The batch form for graders with many answers at hand (a forest's leaves): the checks
    are spread over `pool` (default: the process-wide one, `workers` = cores), each bounded
    in time as in `is_equivalent`, and the answers come back in the order of `pairs`.

    >>> grade_many([("1/2", "0.5"), (r"\boxed{3}", "4"), (None, "4")])
    [True, False, False]
    """
    todo = [_total_to_verify(pred, gold) for pred, gold in pairs]
    known = {p: _verdicts.get(p) for p in todo if isinstance(p, tuple)}
    missing = [p for p, ok in known.items() if ok is None]
    if missing:
        for pair, ok in zip(missing, (pool or shared_pool()).equivalent_many(missing), strict=True):
            known[pair] = ok
            _remember(pair, ok)
    return [p if isinstance(p, bool) else known[p] for p in todo]


def _to_verify(pred: str, gold: str) -> tuple[str, str] | bool:
    """The verdict when cheap, else the (pred, gold) answers math-verify must compare."""
    # Either side may still carry its wrapping ($...$, \boxed{}, "the answer is ...").
    pred = _gradable(extract_answer(pred) or pred.strip())
    gold = _gradable(extract_answer(gold) or gold.strip())
    if not pred or not gold:
        return False
    if normalize(pred) == normalize(gold):
        return True
    interval = written_as_interval(gold)
    pred, gold = _IN.sub("", pred, count=1), _IN.sub("", gold, count=1)
    if interval and (len(split_top(pred)) > 1 or pred.startswith("\\{")):
        return False  # listed values (an interval's endpoints, say) are not an interval
    return normalize(pred) == normalize(gold) or (pred, gold)


def _total_to_verify(pred: object, gold: object) -> tuple[str, str] | bool:
    if not isinstance(pred, str) or not isinstance(gold, str):
        return False
    try:
        return _to_verify(pred, gold)
    except Unparseable:
        return False


_verdicts: dict[tuple[str, str], bool] = {}


def _remember(pair: tuple[str, str], ok: bool) -> None:
    if len(_verdicts) >= MAX_CACHED:
        _verdicts.clear()
    _verdicts[pair] = ok


def answer_order(question: str) -> bool | None:
    r"""Whether the question asks for an ordered answer (True), a set (False) or cannot tell.

    Strongest first: an ordered pair/triple/tuple, a template such as "$(a,b)$", an
    interval or a listing order ("in increasing order") is ordered; "separated by commas"
    or "in any order" is a set; coordinates are ordered; "all solutions/values/roots" is a
    set. The gold answers of MATH already agree with their questions' wording but for a few
    listing-order questions (`gold_in_order`).

    >>> answer_order(r"Enter the ordered pair $(a,b).$")
    True
    >>> answer_order("Enter all the solutions, separated by commas.")
    False
    >>> answer_order(r"Find the point, in the form $(x, y)$."), answer_order("What is $1+1$?") is None
    (True, True)
    """
    if _TUPLE_WORDS.search(question) or _ORDER_WORDS.search(question):
        return True
    if _LIST_WORDS.search(question):
        return False
    if _COORDINATES.search(question):
        return True
    if _ALL_WORDS.search(question):
        return False
    return None


def split_top(answer: str) -> list[str]:
    r"""The answer's comma-separated parts outside any brackets.

    >>> split_top(r"(1,2), \{3, 4\}, \frac{5}{6}")
    ['(1,2)', '\\{3, 4\\}', '\\frac{5}{6}']
    """
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(answer):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            parts.append(answer[start:i].strip())
            start = i + 1
    parts.append(answer[start:].strip())
    return parts


def gold_as_read(answer: str, question: str) -> str:
    r"""The gold answer written in the notation that carries the question's reading.

    A plain list in an ordered question becomes a tuple; a tuple of three or more parts in
    a set question becomes a set (two parts in parentheses may be an open interval: kept);
    an open interval `(a, b)`, which math-verify would also read as a pair, is written
    `x \in (a, b)` (MATH's own notation for a solution interval) in an interval question.

    >>> gold_as_read("2, -3", "Enter the ordered pair $(a,b)$."), gold_as_read("2, -3", "Find $x$.")
    ('(2, -3)', '2, -3')
    >>> gold_as_read("(1, 2, 3)", "Enter all the solutions, separated by commas.")
    '\\{1, 2, 3\\}'
    >>> gold_as_read("(-7, -2)", "Express your answer in interval notation.")
    'x \\in (-7, -2)'
    """
    ordered = answer_order(question)
    if ordered is True:
        if _INTERVAL_WORDS.search(question) and _open_pair(answer):
            return f"x \\in {answer}"
        parts = split_top(answer)
        # Words in a list ("6, 8, \text{and} 10") stay as they are: no tuple reads them.
        listed = len(parts) > 1 and not _THOUSANDS.match(answer) and "\\text" not in answer
        if listed and not any(p.startswith(("(", "[", "\\left", "\\{")) for p in parts):
            return f"({answer})"
    elif ordered is False:
        inner = _TUPLE_GOLD.match(answer)
        if inner and _balanced(inner.group(1)) and len(split_top(inner.group(1))) > 2:
            return f"\\{{{inner.group(1)}\\}}"
    return answer


def _open_pair(answer: str) -> bool:
    """Whether the answer is `(a, b)` with finite a and b: an open interval or a pair."""
    inner = _TUPLE_GOLD.match(answer)
    if not inner or "\\infty" in answer or not _balanced(inner.group(1)):
        return False
    return len(split_top(inner.group(1))) == 2


def _balanced(text: str) -> bool:
    """Whether no bracket in `text` closes one opened before it (so `(text)` is one group)."""
    depth = 0
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth < 0:
            return False
    return depth == 0


def written_as_interval(answer: str) -> bool:
    r"""Whether the answer is written as an interval (or a union of them), not as a pair.

    >>> [written_as_interval(a) for a in ("[-2, 7)", r"(-\infty, 0)", r"x \in (1, 2)", "(1, 2)", "[1, 2]")]
    [True, True, True, False, True]
    """
    if _IN.match(answer) or "\\cup" in answer:
        return True
    a = answer.strip()
    ends = re.match(r"^(?:\\left)?[\[(]", a) and re.search(r"[\])]$", a)
    if not ends or len(split_top(a)) > 1:
        return False
    return "\\infty" in a or a.removeprefix("\\left").startswith("[") or a.endswith("]")


def gold_from_solution(solution: str, question: str) -> str:
    r"""The solution's final answer: its last box, or its last boxes listed together when the
    question asks for several values (some MATH solutions box each solution on its own).

    >>> sol = r"So $x = \boxed{-2}$ and $x = \boxed{1}$."
    >>> gold_from_solution(sol, "Find all solutions."), gold_from_solution(sol, "Find $x$.")
    ('-2, 1', '1')
    >>> gold_from_solution(r"$\boxed{(1,0)}$ and $\boxed{(3,0)}$", "Enter one of the foci, not both.")
    '(3,0)'
    """
    several = any(w.search(question) for w in (_LIST_WORDS, _ALL_WORDS, _ORDER_WORDS))
    if several and not _ONE_OF.search(question):
        return _last_boxes(solution) or ""
    return _clean(last_boxed(solution) or "") or ""


def parse_row(row: dict[str, Any], where: str) -> Problem:
    """A Problem from a MATH / MATH-500 row; the gold answer is the solution's last box(es)."""
    question = field_str(row, "problem", where).strip()
    solution = field_str(row, "solution", where)
    boxed = last_boxed(solution)
    if boxed is None:
        raise MaltError(f"{where}: field 'solution' has no \\boxed{{...}} final answer")
    meta: dict[str, Any] = {"solution": solution}
    answer = gold_from_solution(solution, question)
    ordered = answer_order(question)
    if ordered is not None:
        meta["ordered"] = ordered
        written = gold_as_read(answer, question)
        if written != answer:
            meta["boxed_answer"], answer = answer, written
    if not answer:
        # Two rows of the original MATH train split end in an empty box; keep them so the
        # split stays whole, but nothing can grade correct against an empty gold answer.
        meta["ungradable"] = "the solution's final box is empty"
    for key in ("unique_id", "level", "type", "subject", "answer"):
        if row.get(key) is not None:
            meta["reference_answer" if key == "answer" else key] = row[key]
    uid = row.get("unique_id")
    has_uid = isinstance(uid, str) and uid.strip()
    return Problem(
        id=safe_id(NAME, uid) if has_uid else stable_id(NAME, question),
        question=question,
        answer=answer,
        task=NAME,
        meta=meta,
    )


TASK = Task(
    name=NAME,
    parse_row=parse_row,
    extract_fn=extract_answer,
    equivalent_fn=is_equivalent,
    prompts=role_prompts("competition math problem", "\\boxed{<answer>}"),
    default_hub_id="DigitalLearningGmbH/MATH-lighteval",
    default_hub_config="default",
)
