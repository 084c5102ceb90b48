"""The benchmark registry: one module per benchmark registers a `Benchmark` subclass here.

A benchmark turns its official annotation files into manifest entries whose `video` is the
conventional relative path of the benchmark's video release (e.g. `video7020.mp4`); resolving
those against a local folder is `videos.py`'s job, writing them `convert.py`'s.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from tvr.io.manifest import ManifestEntry
from tvr.registry import Registry


@dataclass(frozen=True)
class Sources:
    """What the user passed: the official annotation file(s) and an optional split list."""

    annotations: tuple[Path, ...]
    split_list: Path | None = None


@dataclass(frozen=True)
class Converted:
    """A benchmark's entries (in gallery order), notes worth telling the user, and other base
    names a video is commonly saved under (e.g. YouTube ids without ActivityNet's `v_`)."""

    entries: tuple[ManifestEntry, ...]
    notes: tuple[str, ...] = ()
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class Benchmark(abc.ABC):
    """Turns one benchmark's official annotation files into manifest entries."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for `tvr dataset list`
    splits: ClassVar[tuple[str, ...]]  # splits it can produce
    annotations_help: ClassVar[str]  # which official files --annotations takes
    split_list_help: ClassVar[str] = ""  # what --split-list means here ("" = not used)

    @abc.abstractmethod
    def load(self, sources: Sources) -> Converted:
        """Parse and validate the files; raise TvrError naming file, line and field on bad input."""


DATASETS: Registry[type[Benchmark]] = Registry("dataset", package="tvr.eval.datasets")


def register(cls: type[Benchmark]) -> type[Benchmark]:
    """Class decorator: adds a benchmark under its `name`."""
    DATASETS.add(cls.name, cls)
    return cls


def get_benchmark(name: str) -> Benchmark:
    """A fresh instance of the named benchmark (UnknownName lists the known ones)."""
    return DATASETS.get(name)()


def benchmark_names() -> list[str]:
    return DATASETS.names()
