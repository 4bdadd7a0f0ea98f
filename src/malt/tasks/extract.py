"""Pure text helpers the task graders share: boxed contents, marked answer spans, safe ids.

Model text is data: everything here is string scanning, nothing is evaluated.
"""

from __future__ import annotations

import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def last_boxed(text: str) -> str | None:
    r"""Contents of the last `\boxed{...}` / `\fbox{...}` (nested braces kept), or None.

    Also reads the brace-less form `\boxed 9`. An unclosed box counts as no box.

    >>> last_boxed(r"so $x = \boxed{\frac{1}{2}}$ and then \boxed{3}.")
    '3'
    >>> last_boxed(r"$\boxed{\left(3, \frac{\pi}{2}\right)}$")
    '\\left(3, \\frac{\\pi}{2}\\right)'
    >>> last_boxed(r"It follows that $x^2 + y^2 = \boxed 9$.")
    '9'
    >>> last_boxed(r"\fbox{A}") , last_boxed("no box"), last_boxed(r"\boxed{1 + {2}")
    ('A', None, None)
    """
    start = max(text.rfind(cmd) for cmd in _BOX_COMMANDS)
    while start >= 0:
        cmd = next(c for c in _BOX_COMMANDS if text.startswith(c, start))
        found = _box_body(text, start + len(cmd))
        if found is not None:
            return found
        # An unclosed last box: fall back to the box before it.
        start = max(text.rfind(c, 0, start) for c in _BOX_COMMANDS)
    return None


def _box_body(text: str, i: int) -> str | None:
    """The braced (or single-token) argument starting at text[i], or None when malformed."""
    if text.startswith(" ", i) and not text[i:].lstrip(" ").startswith("{"):
        token = re.match(r"\s+([^\s$]+)", text[i:])
        return token.group(1).rstrip(".,;") if token else None
    j = i + len(text[i:]) - len(text[i:].lstrip())
    if not text.startswith("{", j):
        return None
    depth = 0
    for k in range(j, len(text)):
        if text[k] == "{" and text[k - 1] != "\\":
            depth += 1
        elif text[k] == "}" and text[k - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[j + 1 : k].strip()
    return None


def after_last(pattern: re.Pattern[str], text: str, max_chars: int = 200) -> str | None:
    r"""The first non-empty line of text after the last match of `pattern`, or None.

    >>> after_last(re.compile(r"(?i)final answer\s*:"), "Final Answer:\n\n 42 apples\nbye")
    '42 apples'
    >>> after_last(re.compile("####"), "no marker") is None
    True
    """
    last = last_match(pattern, text)
    if last is None:
        return None
    rest = text[last.end() :].lstrip()
    line = rest.split("\n", 1)[0].strip()
    return line[:max_chars] if line else None


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
