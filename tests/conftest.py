"""Shared test fixtures: one torch thread, a tiny local model, and a toy task."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

# The machine's cores are shared; tests run torch single-threaded.
os.environ.setdefault("OMP_NUM_THREADS", "1")

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random-init tiny Llama with a chat template, saved once per session."""
    from malt.embedded.tiny import init_model

    return init_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture
def toy_task(monkeypatch):
    """Register the `toy` task (tests/toy_task.py) under the name "toy"."""
    from malt import tasks

    monkeypatch.setitem(tasks.TASKS, "toy", "toy_task")
    return tasks.get_task("toy")


@pytest.fixture
def toy_data(tmp_path) -> Path:
    """A JSONL file of eight toy questions."""
    from toy_task import QUESTIONS

    path = tmp_path / "toy.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QUESTIONS))
    return path


def shared_data() -> Path | None:
    """The public datasets folder (env MALT_SHARED_DATA, else <repo>/../shared/data)."""
    root = os.environ.get("MALT_SHARED_DATA")
    path = Path(root) if root else TESTS_DIR.parent.parent / "shared" / "data"
    return path if path.is_dir() else None
