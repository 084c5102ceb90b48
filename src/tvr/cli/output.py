"""Where CLI output goes: human tables and progress bars to stderr, `--json` documents to stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console


def stderr_console() -> Console:
    return Console(stderr=True)


def print_json(doc: Any) -> None:
    """One JSON document on stdout (machine-readable output of `--json`)."""
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()
