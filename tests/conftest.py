"""Shared test fixtures: running the CLI in-process and locating the optional real data."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Pretrained backbones built by tests go to a folder of this session, never the user's cache.
os.environ["TVR_CACHE_DIR"] = tempfile.mkdtemp(prefix="tvr-test-cache-")
atexit.register(shutil.rmtree, os.environ["TVR_CACHE_DIR"], True)

# transformers' log handler keeps the stderr stream it sees when first imported. Import it here, outside
# any test: first imported inside a test that captures stderr (capsys), it would write every later
# warning to that test's closed stream ("--- Logging error ---" in a later test's stderr).
import transformers  # noqa: E402,F401

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capsys):
    """Run `tvr ARGS...` in-process; returns exit code and captured stdout/stderr."""
    from tvr.cli.main import main

    def _run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return _run


@pytest.fixture
def realdata() -> Path:
    """The read-only real public data beside the project; tests using it skip when it is absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real data folder {REALDATA} is absent")
    return REALDATA


@pytest.fixture
def cpu_load():
    """Two busy-looping processes (one per core here) for as long as the test runs: determinism
    claims must hold on a loaded machine, not only on an idle one."""
    import subprocess
    import sys

    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield burners
    finally:
        for p in burners:
            p.kill()
        for p in burners:
            p.wait()
