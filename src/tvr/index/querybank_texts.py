"""Which captions form an index's querybank: `--querybank MANIFEST_OR_TXT`, else the training captions.

`--querybank` is a manifest (its captions) or a plain text file of one caption a line (UTF-8; blank
lines are skipped). A zero-shot index has no training captions: without `--querybank` it has no
querybank, and search offers no IS/DIS.

QB-Norm's default querybank is the training captions encoded by the same model. The trainer stores
them in the run itself (RUN/querybank_captions.json), so the querybank does not depend on the
folder a command runs from or on the training manifest still being there. Runs made before that
file existed recorded the manifest's path in config.json ("training.manifest"); it is used when it
still resolves. Neither: no querybank, and search offers no IS/DIS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tvr.errors import TvrError
from tvr.models.registry import TRAINING_CAPTIONS_FILE, read_training_captions


def querybank_captions(
    querybank: Path | None, checkpoint: Path | None, checkpoint_doc: dict[str, Any]
) -> tuple[list[str], str | None]:
    """(captions, where they came from); ([], None) when there is no querybank."""
    from tvr.io.manifest import read_manifest

    if querybank is not None:
        if Path(querybank).suffix.lower() == ".txt":
            return read_caption_lines(Path(querybank)), str(querybank)
        m = read_manifest(querybank)
        return [e.caption for e in m.entries], str(querybank)
    if checkpoint is None:
        return [], None
    stored = checkpoint / TRAINING_CAPTIONS_FILE
    if stored.is_file():
        return read_training_captions(stored), f"{stored} (training captions)"
    training = checkpoint_doc.get("training")
    recorded = training.get("manifest") if isinstance(training, dict) else None
    if not isinstance(recorded, str) or not Path(recorded).is_absolute() or not Path(recorded).is_file():
        return [], None  # a relative path would depend on the current folder
    try:
        m = read_manifest(recorded)
    except TvrError:
        return [], None  # the training manifest changed since; indexing goes on without a querybank
    part = m if m.splits() == {None} else m.split("train")
    return [e.caption for e in part.entries], f"{recorded} (training captions)"


def read_caption_lines(path: Path) -> list[str]:
    """The non-blank lines of a UTF-8 text file, one caption each."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TvrError(f"{path}: caption file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TvrError(f"{path}: not a readable UTF-8 text file ({exc})") from None
    captions = [line.strip() for line in text.splitlines() if line.strip()]
    if not captions:
        raise TvrError(f"{path}: holds no captions (one caption a line)")
    return captions
