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

A sharded index (`tvr index --shards N`) has the same commit point, in another format
(`tvr-sharded-index`): its generation folder holds N complete indexes, one per shard, each holding
the items whose name hashes to it (`shard_of`)::

    INDEX/index.json                 format tvr-sharded-index: the shards, their sizes and index.json sha256s
    INDEX/data-<id>/shard-000/       a tvr index of its own (index.json + data-<id2>/ as above)

A build writes a fresh `data-<id>` folder, then replaces `index.json` atomically; only then are
older generations deleted. A kill at any moment leaves either the old or the new index readable,
and a re-run cleans up what the killed one left behind. One process writes an index at a time: it
holds `INDEX/.lock` (flock, released by the kernel when the writer dies); a second writer fails fast.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
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
SHARDED_FORMAT = "tvr-sharded-index"
SHARD_PREFIX = "shard-"
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
    if isinstance(doc, dict) and doc.get("format") == SHARDED_FORMAT:
        raise TvrError(f"{path}: a sharded index ({len(doc.get('shards') or [])} shards); open it with "
                       "tvr.index.sharded.open_index, or name one of its shard folders")
    _check_header(doc, path, FORMAT_NAME, "a tvr index")
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
        _inside(path, entry["path"], f"file of {role!r}")
    return info


@dataclass(frozen=True)
class ShardSetInfo:
    """The content of a sharded index's index.json: N indexes over disjoint items, one model."""

    method: str
    model_sha256: str
    kind: str  # the shards' vector index kind ("flat", …; "flat+hnsw" when sizes made them differ)
    data_dir: str  # "data-<id>": the generation holding every shard
    shards: list[dict[str, Any]]  # {"path": relative folder, "index_sha256": of its index.json, "n_items"}
    n_items: int
    failed: list[dict[str, str]] = field(default_factory=list)
    source: str = ""
    created_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SHARDED_FORMAT, "version": FORMAT_VERSION, "method": self.method,
            "model_sha256": self.model_sha256, "kind": self.kind, "data_dir": self.data_dir, "shard_hash": "sha256(item name) mod n_shards",
            "shards": self.shards, "n_items": self.n_items, "n_failed": len(self.failed), "failed": self.failed,
            "source": self.source, "created_s": self.created_s,
        }

    def shard_roots(self, root: Path) -> list[Path]:
        return [root / s["path"] for s in self.shards]


def shard_of(name: str, n_shards: int) -> int:
    """The shard that holds the item named `name`: the first 8 bytes of sha256(name), modulo the shard count."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") % n_shards


def is_sharded(root: Path) -> bool:
    """Whether `root/index.json` is a sharded index's (False for a plain index or none at all)."""
    try:
        doc = json.loads((Path(root) / INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == SHARDED_FORMAT


def read_shard_set(root: Path) -> ShardSetInfo:
    """Parse a sharded index's index.json and check each shard's index.json against its recorded sha256."""
    root = Path(root)
    path = root / INDEX_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TvrError(f"{path}: cannot read ({exc})") from None
    _check_header(doc, path, SHARDED_FORMAT, "a sharded tvr index")
    try:
        shards = doc["shards"]
        if not isinstance(shards, list) or not shards or any(
            not isinstance(s, dict) or not isinstance(s.get("path"), str) or not isinstance(s.get("index_sha256"), str)
            or isinstance(s.get("n_items"), bool) or not isinstance(s.get("n_items"), int) for s in shards
        ):
            raise TvrError(f"{path}: field 'shards' must be a non-empty list of {{'path', 'index_sha256', 'n_items'}}")
        failed = doc.get("failed") or []
        created = doc.get("created_s", 0.0)
        if not isinstance(failed, list) or isinstance(created, bool) or not isinstance(created, (int, float)):
            raise TvrError(f"{path}: field 'failed' must be a list and 'created_s' a number")
        info = ShardSetInfo(
            method=_typed(doc, "method", str, path), model_sha256=_typed(doc, "model_sha256", str, path),
            kind=_typed(doc, "kind", str, path), data_dir=_typed(doc, "data_dir", str, path), shards=shards,
            n_items=_typed(doc, "n_items", int, path), failed=list(failed), source=str(doc.get("source", "")),
            created_s=float(created),
        )
    except KeyError as exc:
        raise TvrError(f"{path}: field {exc.args[0]!r} is missing") from None
    for entry in shards:
        shard_file = root / _inside(path, entry["path"], "shard folder") / INDEX_FILE
        if not shard_file.is_file():
            raise TvrError(f"{shard_file}: missing (the sharded index is incomplete; rebuild it with 'tvr index')")
        if sha256_file(shard_file) != entry["index_sha256"]:
            raise TvrError(f"{shard_file}: checksum mismatch (the shard was replaced or is corrupt; rebuild the index)")
    if sum(s["n_items"] for s in shards) != info.n_items:
        raise TvrError(f"{path}: the shards' n_items do not add up to field 'n_items' ({info.n_items})")
    return info


def commit_shard_set(root: Path, info: ShardSetInfo) -> None:
    """Make the shard set `info` the index (atomic replace of index.json), then delete every other generation."""
    atomic_write_json(root / INDEX_FILE, info.to_json())
    clean(root, keep=info.data_dir)


def verify_files(root: Path, info: IndexInfo) -> None:
    """Check that every file index.json names exists and has its recorded sha256."""
    for role, entry in info.files.items():
        p = root / entry["path"]
        if not p.is_file():
            raise TvrError(f"{p}: missing (the index is incomplete; rebuild it with 'tvr index')")
        if sha256_file(p) != entry["sha256"]:
            raise TvrError(f"{p}: checksum mismatch (the index file is corrupt or was replaced; rebuild the index)")


def _check_header(doc: Any, path: Path, format_name: str, what: str) -> None:
    """A TvrError unless `doc` is an object of format `format_name` at this tvr's version."""
    if not isinstance(doc, dict) or doc.get("format") != format_name:
        raise TvrError(f"{path}: not {what} (field 'format' is not {format_name!r})")
    if doc.get("version") != FORMAT_VERSION:
        raise TvrError(f"{path}: index format version {doc.get('version')!r}, this tvr reads version {FORMAT_VERSION}")


def _inside(path: Path, relative: str, what: str) -> Path:
    """`relative` as a path inside the index; a TvrError naming `path` when it is absolute or climbs out."""
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise TvrError(f"{path}: {what} must be a relative path inside the index, got {relative!r}")
    return rel


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
