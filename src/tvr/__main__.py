"""`python -m tvr …` runs the `tvr` command (what `torchrun … -m tvr train …` starts on every rank)."""

from tvr.cli.main import run

run()
