"""Run the doctests of the task modules (the extractor tables in their docstrings)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "malt.tasks",
    "malt.tasks.base",
    "malt.tasks.extract",
    "malt.tasks.prompts",
    "malt.tasks.gsm8k",
    "malt.tasks.math",
    "malt.tasks.csqa",
    "malt.tasks.arith",
    "malt.tasks.arith_formats",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
