"""The index directory format: `index.json` (the commit point) naming one generation of data files.

Layout::

    INDEX/index.json                 format, version, method, weights sha256, counts, sha256 per file
    INDEX/data-<id>/model/           copy of the checkpoint (config.json + model.safetensors)
    INDEX/data-<id>/vectors.faiss    FAISS inner-product index over the gallery (or candidate) vectors
    INDEX/data-<id>/vectors_is.faiss IS folded into the index (inner-product models with a querybank)
    INDEX/data-<id>/gallery.safetensors  every tensor field of the model's VideoEmb, row = gallery item
    INDEX/data-<id>/items.sqlite     per-item metadata (key, path, clip bounds, duration)
    INDEX/data-<id>/querybank.safetensors  QueryBank statistics (optional)
    INDEX/data-<id>/querybank_captions.json  the querybank's captions (video→text in the web page)
    INDEX/data-<id>/fingerprints.json  frame sampling + each item's file identity (lets an update reuse rows)

A build writes a fresh `data-<id>` folder, then replaces `index.json` atomically; only then are
older generations deleted. A kill at any moment leaves either the old or the new index readable,
and a re-run cleans up what the killed one left behind. One process writes an index at a time: it
holds `INDEX/.lock` (flock, released by the kernel when the writer dies); a second writer fails fast.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvr.atomic import atomic_write_json
from tvr.checksums import sha256_file
from tvr.errors import TvrError

FORMAT_NAME = "tvr-index"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"
DATA_PREFIX = "data-"
LOCK_FILE = ".lock"

# roles of the files one generation holds (keys of IndexInfo.files)
MODEL_CONFIG = "model_config"
MODEL_WEIGHTS = "model_weights"
VECTORS = "vectors"
VECTORS_IS = "vectors_is"
GALLERY = "gallery"
ITEMS = "items"
QUERYBANK = "querybank"
FINGERPRINTS = "fingerprints"
QUERYBANK_TEXTS = "querybank_texts"

FILE_NAMES = {
    MODEL_CONFIG: "model/config.json",
    MODEL_WEIGHTS: "model/model.safetensors",
    VECTORS: "vectors.faiss",
    VECTORS_IS: "vectors_is.faiss",
    GALLERY: "gallery.safetensors",
    ITEMS: "items.sqlite",
    QUERYBANK: "querybank.safetensors",
    FINGERPRINTS: "fingerprints.json",
    QUERYBANK_TEXTS: "querybank_captions.json",
}
MILVUS_FILE_NAMES = {VECTORS: "vectors.milvus.json", VECTORS_IS: "vectors_is.milvus.json"}  # descriptors
BACKENDS = ("faiss", "milvus")
REQUIRED_ROLES = (MODEL_CONFIG, MODEL_WEIGHTS, VECTORS, GALLERY, ITEMS)


@dataclass(frozen=True)
class IndexInfo:
    """The content of index.json: what the index holds and the checksum of every file."""

    method: str
    model_sha256: str  # sha256 of the checkpoint's model.safetensors
    inner_product: bool  # False: FAISS holds candidate vectors; hits are re-scored by model.similarity
    kind: str  # flat | hnsw | ivf
    n_items: int
    dim: int
    emb_class: str  # "module:QualName" of the VideoEmb subclass stored in gallery.safetensors
    data_dir: str  # "data-<id>", relative to the index directory
    files: dict[str, dict[str, str]]  # role → {"path": relative path, "sha256": hex}
    querybank: dict[str, Any] | None = None  # {"n_bank", "beta", "dis_k", "csls_k", "source"}
    failed: list[dict[str, str]] = field(default_factory=list)  # videos skipped: {"path", "key", "error"}
    source: str = ""
    created_s: float = 0.0
    backend: str = "faiss"  # where the vectors live: FAISS files, or Milvus collections named by descriptors

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "method": self.method,
            "model_sha256": self.model_sha256, "inner_product": self.inner_product, "kind": self.kind,
            "n_items": self.n_items, "n_failed": len(self.failed), "dim": self.dim, "emb_class": self.emb_class,
            "data_dir": self.data_dir, "files": self.files, "querybank": self.querybank, "failed": self.failed,
            "source": self.source, "created_s": self.created_s, "backend": self.backend,
        }

    def path_of(self, root: Path, role: str) -> Path:
        return root / self.files[role]["path"]

    def has(self, role: str) -> bool:
        return role in self.files


@contextlib.contextmanager
def writer_lock(root: Path) -> Iterator[None]:
    """Hold the index's writer lock for the block; another writer holding it is an error, at once."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TvrError(f"{root}: another process is writing this index; wait for it to finish") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def new_data_dir(root: Path) -> Path:
    """A fresh, empty generation folder inside the index directory."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{DATA_PREFIX}{secrets.token_hex(6)}"
    path.mkdir()
    return path


def describe_files(root: Path, data_dir: Path, roles: list[str], names: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """role → {"path", "sha256"} for the finished files of one generation (`names`: file names other than FILE_NAMES')."""
    out = {}
    for role in roles:
        p = data_dir / {**FILE_NAMES, **(names or {})}[role]
        out[role] = {"path": p.relative_to(root).as_posix(), "sha256": sha256_file(p)}
    return out


def commit(root: Path, info: IndexInfo) -> None:
    """Make `info` the index (atomic replace of index.json), then delete every other generation."""
    atomic_write_json(root / INDEX_FILE, info.to_json())
    clean(root, keep=info.data_dir)


def clean(root: Path, keep: str | None) -> list[str]:
    """Delete generations other than `keep` and stray temporary files of index.json."""
    removed = []
    if not root.is_dir():
        return removed
    for p in sorted(root.iterdir()):
        stale_gen = p.is_dir() and p.name.startswith(DATA_PREFIX) and p.name != keep
        stray_tmp = p.is_file() and p.name.startswith(f".{INDEX_FILE}.") and p.name.endswith(".tmp")
        if stale_gen:
            drop_collections(p)
            shutil.rmtree(p, ignore_errors=True)
        elif stray_tmp:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        else:
            continue
        removed.append(p.name)
    return removed


def read_info(root: Path) -> IndexInfo:
    """Parse and validate index.json; every problem is a TvrError naming the file and field."""
    root = Path(root)
    if not root.exists():
        raise TvrError(f"{root}: index directory not found")
    if not root.is_dir():
        raise TvrError(f"{root}: not a directory")
    path = root / INDEX_FILE
    if not path.is_file():
        raise TvrError(f"{path}: missing; {root} is not a tvr index (build one with 'tvr index')")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TvrError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise TvrError(f"{path}: not a tvr index (field 'format' is not {FORMAT_NAME!r})")
    if doc.get("version") != FORMAT_VERSION:
        raise TvrError(f"{path}: index format version {doc.get('version')!r}, this tvr reads version {FORMAT_VERSION}")
    try:
        files = doc["files"]
        if not isinstance(files, dict) or any(
            not isinstance(v, dict) or not isinstance(v.get("path"), str) or not isinstance(v.get("sha256"), str)
            for v in files.values()
        ):
            raise TvrError(f"{path}: field 'files' must map roles to {{'path', 'sha256'}}")
        missing = [r for r in REQUIRED_ROLES if r not in files]
        if missing:
            raise TvrError(f"{path}: field 'files' lacks {', '.join(missing)}")
        info = IndexInfo(
            method=_typed(doc, "method", str, path), model_sha256=_typed(doc, "model_sha256", str, path),
            inner_product=_typed(doc, "inner_product", bool, path), kind=_typed(doc, "kind", str, path),
            n_items=_typed(doc, "n_items", int, path), dim=_typed(doc, "dim", int, path),
            emb_class=_typed(doc, "emb_class", str, path), data_dir=_typed(doc, "data_dir", str, path),
            files=files, querybank=doc.get("querybank"), failed=list(doc.get("failed") or []),
            source=str(doc.get("source", "")), created_s=float(doc.get("created_s", 0.0)),
            backend=str(doc.get("backend", "faiss")),
        )
        if info.backend not in BACKENDS:
            raise TvrError(f"{path}: field 'backend' must be one of {', '.join(BACKENDS)}, got {info.backend!r}")
    except KeyError as exc:
        raise TvrError(f"{path}: field {exc.args[0]!r} is missing") from None
    for role, entry in info.files.items():
        rel = Path(entry["path"])
        if rel.is_absolute() or ".." in rel.parts:
            raise TvrError(f"{path}: file of {role!r} must be a relative path inside the index, got {entry['path']!r}")
    return info


def verify_files(root: Path, info: IndexInfo) -> None:
    """Check that every file index.json names exists and has its recorded sha256."""
    for role, entry in info.files.items():
        p = root / entry["path"]
        if not p.is_file():
            raise TvrError(f"{p}: missing (the index is incomplete; rebuild it with 'tvr index')")
        if sha256_file(p) != entry["sha256"]:
            raise TvrError(f"{p}: checksum mismatch (the index file is corrupt or was replaced; rebuild the index)")


def _typed(doc: dict[str, Any], key: str, tp: type, path: Path) -> Any:
    value = doc[key]
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise TvrError(f"{path}: field {key!r} must be a {tp.__name__}, got {value!r}")
    return value


def drop_collections(data_dir: Path) -> None:
    """Drop the Milvus collections a generation names (it is being deleted); nothing for FAISS files."""
    if any(Path(data_dir).glob("*.milvus.json")):
        from tvr.index.milvus_index import drop_described

        drop_described(data_dir)
