"""Training-test fixtures: one torch thread (the test machine's cores are shared), tiny models."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A random-init tiny Llama folder built once per test session."""
    from malt.embedded.tiny import init_model

    return init_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)
