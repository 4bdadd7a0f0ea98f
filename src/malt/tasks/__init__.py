"""Task registry: `get_task(name)` returns a `Task` (loader, role prompts, grader).

    >>> from malt.tasks import get_task
    >>> task = get_task("gsm8k")
    >>> task.is_equivalent(task.extract_answer("... so she pays $1,200. Final Answer: 1200"), "1200")
    True
"""

from __future__ import annotations

import importlib

from malt.errors import MaltError
from malt.tasks.base import Task

# name -> module defining `TASK`; imported on first use so heavy graders load lazily.
TASKS: dict[str, str] = {
    "gsm8k": "malt.tasks.gsm8k",
    "math": "malt.tasks.math",
    "csqa": "malt.tasks.csqa",
    "arith": "malt.tasks.arith",
}


def get_task(name: str) -> Task:
    """The task called `name` (one of TASKS)."""
    if name not in TASKS:
        raise MaltError(f"unknown task {name!r} (known: {', '.join(TASKS)})")
    return importlib.import_module(TASKS[name]).TASK


__all__ = ["TASKS", "Task", "get_task"]
