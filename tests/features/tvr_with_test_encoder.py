"""Run the real `tvr` CLI with the test encoder registered (for subprocess tests)."""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from feature_helpers import register_test_encoder

    register_test_encoder()
    from tvr.cli.main import main

    sys.exit(main(sys.argv[1:]))
