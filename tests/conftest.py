"""Shared pytest set-up: offline Hugging Face settings and the real-data folder.

Tests never reach the network: the Hub runs offline and without telemetry, and
Gradio without analytics, before any test module imports those libraries.
Real images are read only through the ``shared_data`` fixture, which skips the
test with a clear reason when ``../shared/data`` (beside the repository) is
absent, e.g. on CI.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
#: ``../shared/data`` relative to the repository root.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real images beside the repository, or skip the test."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not found: real-image tests need the shared data folder beside the repo")
    return SHARED_DATA


@pytest.fixture
def hf_cache(tmp_path) -> str:
    """A fresh, test-private ``datasets`` cache directory (as a string)."""
    path = tmp_path / "cache"
    path.mkdir()
    return str(path)
