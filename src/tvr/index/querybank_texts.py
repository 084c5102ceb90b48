"""Which captions form an index's querybank: `--querybank MANIFEST`, else the training captions.

QB-Norm's default querybank is the training captions encoded by the same model; the trainer
records its manifest in the checkpoint's config.json ("training.manifest"), so indexing can find
them. No manifest recorded (or no longer there): no querybank, and search offers no IS/DIS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tvr.errors import TvrError


def querybank_captions(querybank: Path | None, checkpoint_doc: dict[str, Any]) -> tuple[list[str], str | None]:
    """(captions, where they came from); ([], None) when there is no querybank."""
    from tvr.io.manifest import read_manifest

    if querybank is not None:
        m = read_manifest(querybank)
        return [e.caption for e in m.entries], str(querybank)
    training = checkpoint_doc.get("training")
    recorded = training.get("manifest") if isinstance(training, dict) else None
    if not isinstance(recorded, str) or not Path(recorded).is_file():
        return [], None
    try:
        m = read_manifest(recorded)
    except TvrError:
        return [], None  # the training manifest changed since; indexing goes on without a querybank
    part = m if m.splits() == {None} else m.split("train")
    return [e.caption for e in part.entries], f"{recorded} (training captions)"
