"""Pure text helpers the task graders share: boxed contents, marked answer spans, safe ids.

Model text is data: everything here is string scanning, nothing is evaluated.
"""

from __future__ import annotations

import re

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BRACE = re.compile(r"(?<!\\)[{}]")
_SPACES = re.compile(r"\s*")
_TOKEN = re.compile(r"[^\s$]+")


def last_boxed(text: str) -> str | None:
    r"""Contents of the last `\boxed{...}` / `\fbox{...}` (nested braces kept), or None.

    Also reads the brace-less form `\boxed 9`. An unclosed last box falls back to the
    closed box before it. Linear in the text, however many boxes a degenerate output repeats.

    >>> last_boxed(r"so $x = \boxed{\frac{1}{2}}$ and then \boxed{3}.")
    '3'
    >>> last_boxed(r"$\boxed{\left(3, \frac{\pi}{2}\right)}$")
    '\\left(3, \\frac{\\pi}{2}\\right)'
    >>> last_boxed(r"It follows that $x^2 + y^2 = \boxed 9$.")
    '9'
    >>> last_boxed(r"\fbox{A}") , last_boxed("no box"), last_boxed(r"\boxed{1 + {2}")
    ('A', None, None)
    >>> last_boxed(r"\boxed{4} then \boxed{5")
    '4'
    """
    starts = [m.end() for m in _BOX.finditer(text)]
    if not starts:
        return None
    closing = matching_braces(text)
    for i in reversed(starts):
        j = _SPACES.match(text, i).end()
        if text.startswith("{", j):
            if j in closing:
                return text[j + 1 : closing[j]].strip()
        elif j > i:  # "\boxed 9": a single token after whitespace
            token = _TOKEN.match(text, j)
            if token and token.group(0).rstrip(".,;"):
                return token.group(0).rstrip(".,;")
    return None


def boxed_spans(text: str) -> list[tuple[int, int, str]]:
    r"""(start, end, contents) of every readable `\boxed{...}` / `\fbox{...}`, in order.

    The same boxes `last_boxed` reads (an unclosed box is left out), so the last span's
    contents are `last_boxed(text)`. Linear in the text.

    >>> [c for _, _, c in boxed_spans(r"$\boxed{1}$ and $\boxed 2$, \boxed{3")]
    ['1', '2']
    >>> boxed_spans(r"\boxed{x}")
    [(0, 9, 'x')]
    """
    boxes = list(_BOX.finditer(text))
    closing = matching_braces(text) if boxes else {}
    spans = []
    for m in boxes:
        j = _SPACES.match(text, m.end()).end()
        if text.startswith("{", j):
            if j in closing:
                spans.append((m.start(), closing[j] + 1, text[j + 1 : closing[j]].strip()))
        elif j > m.end():
            token = _TOKEN.match(text, j)
            if token and token.group(0).rstrip(".,;"):
                spans.append((m.start(), token.end(), token.group(0).rstrip(".,;")))
    return spans


def matching_braces(text: str) -> dict[int, int]:
    """Position of each unescaped "{" that is closed -> position of its "}"."""
    stack: list[int] = []
    closing: dict[int, int] = {}
    for m in _BRACE.finditer(text):
        if m.group(0) == "{":
            stack.append(m.start())
        elif stack:
            closing[stack.pop()] = m.start()
    return closing


def after_last(pattern: re.Pattern[str], text: str, max_chars: int = 200) -> str | None:
    r"""The first non-empty line of text after the last match of `pattern`, or None.

    A line longer than `max_chars` is cut at a space, so no number is read from half of it.

    >>> after_last(re.compile(r"(?i)final answer\s*:"), "Final Answer:\n\n 42 apples\nbye")
    '42 apples'
    >>> after_last(re.compile("####"), "no marker") is None
    True
    >>> after_last(re.compile("Answer:"), "Answer: 12 " + "9" * 300, max_chars=10)
    '12'
    """
    last = last_match(pattern, text)
    if last is None:
        return None
    rest = text[last.end() :].lstrip()
    line = rest.split("\n", 1)[0].strip()
    if len(line) > max_chars:
        line = _cut_at_space(line[: max_chars + 1])
    return line or None


def _cut_at_space(head: str) -> str:
    """`head` up to its last whitespace (empty when it has none)."""
    i = len(head) - 1
    while i >= 0 and not head[i].isspace():
        i -= 1
    return head[:i].rstrip() if i > 0 else ""


def last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """The last non-overlapping match of `pattern` in `text`, or None."""
    found = None
    for found in pattern.finditer(text):  # noqa: B007 - keep the last one
        pass
    return found


def safe_id(prefix: str, raw: str) -> str:
    """A task-prefixed id with only [A-Za-z0-9._-] so node ids built from it stay unambiguous.

    >>> safe_id("math", "test/algebra/1.json")
    'math-test-algebra-1'
    """
    stem = raw[:-5] if raw.endswith(".json") else raw
    return f"{prefix}-" + re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-")
