#!/usr/bin/env bash
# Installs tvr with its test dependencies and runs the test suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
# torch==2.13.0 first: an unpinned one resolves to a multi-GB CUDA build.
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q -e ".[dev]"
python3 -m pytest -q "$@"
