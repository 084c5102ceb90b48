"""Fixtures for encoder tests (builders live in encoder_testlib.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from encoder_testlib import make_hf_clip


@pytest.fixture(scope="session")
def hf_clip_dir(tmp_path_factory) -> tuple[Path, object]:
    directory = tmp_path_factory.mktemp("hf_clip")
    return directory, make_hf_clip(directory)
