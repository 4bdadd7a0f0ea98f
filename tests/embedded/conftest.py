"""Keep the tiny-model tests on one thread: the CI box's cores are shared."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    import torch

    torch.set_num_threads(1)
