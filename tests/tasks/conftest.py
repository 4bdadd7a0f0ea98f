"""Shared fixtures for the task tests: where the public datasets live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared datasets folder ($MALT_SHARED_DATA, else <repo>/../shared/data)."""
    env = os.environ.get("MALT_SHARED_DATA")
    path = Path(env) if env else REPO_ROOT / ".." / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared datasets not found at {path} (set MALT_SHARED_DATA)")
    return path
