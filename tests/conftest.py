"""Shared fixtures: toy tasks, hand-built trees, a tiny local model, the public datasets."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from malt.chain import GENERATOR, REFINER, VERIFIER
from malt.records import Branching, Node, Problem, Tree, child_id
from malt.tasks.base import Task

REPO = Path(__file__).resolve().parents[1]
TESTS_DIR = REPO / "tests"
if str(TESTS_DIR) not in sys.path:  # helper modules beside this file (toy_task.py)
    sys.path.insert(0, str(TESTS_DIR))

# The machine's cores are shared; tests run torch single-threaded.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def arith_splits(root: Path, train: int = 8, test: int = 6) -> Path:
    """`root`, holding embedded-world questions: train.jsonl (seed 1) and test.jsonl (seed 2)."""
    from malt.tasks.arith import write_split

    write_split(root / "train.jsonl", train, "train", seed=1)
    write_split(root / "test.jsonl", test, "test", seed=2)
    return root


def shared_data() -> Path:
    """The public datasets: $MALT_SHARED_DATA, else ../shared/data beside the repo."""
    return Path(os.environ.get("MALT_SHARED_DATA", REPO.parent / "shared" / "data"))


from toy_task import TASK as TOY  # noqa: E402 - needs TESTS_DIR on sys.path


def make_tree(rewards: list[list[list[int]]], pid: str = "toy-1", gold: str = "7") -> Tree:
    """A tree whose leaf (g, v, r) is correct iff rewards[g][v][r] == 1."""
    problem = Problem(id=pid, question="q?", answer=gold, task="toy")
    nodes = []
    for g, vs in enumerate(rewards):
        gid = child_id(pid, "g", g)
        nodes.append(Node(gid, GENERATOR, None, TOY.messages(GENERATOR, problem), f"g{g} ANSWER: 0"))
        for v, rs in enumerate(vs):
            vid = child_id(gid, "v", v)
            nodes.append(Node(vid, VERIFIER, gid, TOY.messages(VERIFIER, problem, "x"), f"crit {v}"))
            for r, ok in enumerate(rs):
                text = f"fixed ANSWER: {gold if ok else '0'}"
                nodes.append(Node(child_id(vid, "r", r), REFINER, vid,
                                  TOY.messages(REFINER, problem, "x", "y"), text))
    b = Branching(len(rewards), len(rewards[0]), len(rewards[0][0]))
    return Tree(problem=problem, branching=b, nodes=nodes)


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
def gen_task(monkeypatch) -> Task:
    """The arithmetic task of tests/toy_task.py, registered as task "toy" (for configs)."""
    from malt import tasks

    monkeypatch.setitem(tasks.TASKS, "toy", "toy_task")
    return tasks.get_task("toy")


@pytest.fixture
def toy_data(tmp_path) -> Path:
    """A JSONL file of the eight questions of tests/toy_task.py."""
    from toy_task import QUESTIONS

    path = tmp_path / "toy.jsonl"
    rows = [json.dumps({"question": q, "answer": a}) + "\n" for q, a in QUESTIONS]
    path.write_text("".join(rows))
    return path
