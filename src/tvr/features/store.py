"""The feature store: one directory holding one encoder's per-video tensors and their manifest.

Layout::

    STORE/store.sqlite            one row per video clip: file identity, status, shard pointer
    STORE/shards/<id>.safetensors  tensors of several videos, named "<slot>/<feature>"
    STORE/.lock                    held (flock) by the one process writing the store

Commit protocol (survives kill -9 at any moment): a shard is written to a temporary sibling,
fsynced and renamed; then ONE SQLite transaction points its rows at the finished shard. A shard that
no row references (crash between rename and commit, or superseded by a re-extraction) and stray
temporary files are deleted when the store is opened with no writer active.

A store holds the features of ONE encoder name; opening it for writing with another encoder is a
`TvrError`. A new version of the same encoder makes every older row stale (`is_current` is False),
so it is re-extracted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvr.atomic import commit_temp, temp_path_beside
from tvr.errors import TvrError
from tvr.io.manifest import ManifestEntry

FORMAT_VERSION = 1
DB_NAME = "store.sqlite"
SHARD_DIR = "shards"
LOCK_NAME = ".lock"
HASH_CHUNK_BYTES = 1 << 20  # content hash reads the first and last MiB: fast on huge files

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS videos (
    key TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    start_s REAL,
    end_s REAL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    duration_s REAL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error TEXT,
    encoder_name TEXT NOT NULL,
    encoder_version TEXT NOT NULL,
    shard TEXT,
    slot INTEGER,
    features TEXT,
    updated_s REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS videos_shard ON videos (shard);
"""


class MissingFeatures(TvrError, KeyError):
    """`get` asked for a key that has no stored features (absent or failed)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class EncoderInfo:
    name: str
    version: str


@dataclass(frozen=True)
class FileIdentity:
    """What decides whether stored features still describe a file."""

    size: int
    mtime_ns: int
    content_hash: str


@dataclass(frozen=True)
class StoreEntry:
    """One row of the store's manifest."""

    key: str
    path: str
    start_s: float | None
    end_s: float | None
    size: int
    mtime_ns: int
    content_hash: str
    duration_s: float | None
    status: str  # "ok" | "failed"
    error: str | None
    encoder_name: str
    encoder_version: str
    shard: str | None
    slot: int | None
    features: tuple[str, ...]
    updated_s: float


@dataclass(frozen=True)
class Extracted:
    """Features of one clip, ready to be committed in a shard."""

    key: str
    path: str
    start_s: float | None
    end_s: float | None
    identity: FileIdentity
    duration_s: float | None
    features: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Failure:
    """A clip that could not be decoded or encoded."""

    key: str
    path: str
    start_s: float | None
    end_s: float | None
    identity: FileIdentity
    error: str


def clip_key(path: str | Path, start_s: float | None = None, end_s: float | None = None) -> str:
    """The store key of a video or clip: its absolute path, plus "#start-end" for clips
    (the same spelling as `ManifestEntry.video_key`)."""
    absolute = str(Path(path).expanduser().resolve())
    return ManifestEntry(video=absolute, caption="-", start=start_s, end=end_s).video_key


def content_hash(path: str | Path, size: int | None = None) -> str:
    """blake2b of the size and the first/last MiB: detects edits that keep size and mtime, cheaply."""
    path = Path(path)
    size = path.stat().st_size if size is None else size
    h = hashlib.blake2b(digest_size=16)
    h.update(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(HASH_CHUNK_BYTES))
        if size > HASH_CHUNK_BYTES:
            fh.seek(max(HASH_CHUNK_BYTES, size - HASH_CHUNK_BYTES))
            h.update(fh.read(HASH_CHUNK_BYTES))
    return h.hexdigest()


def file_identity(path: str | Path) -> FileIdentity:
    st = Path(path).stat()
    return FileIdentity(st.st_size, st.st_mtime_ns, content_hash(path, st.st_size))


class FeatureStore:
    """Read and write one feature-store directory (see the module docstring for the layout)."""

    def __init__(self, root: str | Path, *, create: bool = False) -> None:
        self.root = Path(root)
        db = self.root / DB_NAME
        if not db.is_file():
            if not create:
                raise TvrError(f"{self.root}: not a feature store (no {DB_NAME}); run 'tvr extract' first")
            if self.root.exists() and not self.root.is_dir():
                raise TvrError(f"{self.root}: exists and is not a directory")
        (self.root / SHARD_DIR).mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(db, isolation_level=None, timeout=30.0)
        # "new" also covers a creator killed before its first commit (a file without tables)
        is_new = self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None
        if is_new:
            self._db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; persists in the file
        self._db.execute("PRAGMA synchronous=FULL")
        if is_new:
            with self._transaction():
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        self._db.execute(stmt)
                self._set_meta("format_version", str(FORMAT_VERSION))
        found = self._meta("format_version")
        if found != str(FORMAT_VERSION):
            raise TvrError(f"{self.root}: feature store format {found}, this tvr reads format {FORMAT_VERSION}")
        self._lock_fd: int | None = None
        self._clean_if_idle()

    # ----------------------------------------------------------------- reading
    @property
    def encoder(self) -> EncoderInfo | None:
        """The encoder this store holds (the version last used to write it), or None when empty."""
        name, version = self._meta("encoder_name"), self._meta("encoder_version")
        return None if name is None or version is None else EncoderInfo(name, version)

    def entries(self) -> list[StoreEntry]:
        rows = self._db.execute("SELECT * FROM videos ORDER BY key").fetchall()
        return [_entry(r) for r in rows]

    def entry(self, key: str) -> StoreEntry | None:
        row = self._db.execute("SELECT * FROM videos WHERE key = ?", (key,)).fetchone()
        return None if row is None else _entry(row)

    def status(self, key: str) -> str | None:
        """"ok", "failed", or None when the key has no row."""
        row = self._db.execute("SELECT status FROM videos WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def keys(self, status: str | None = "ok") -> list[str]:
        """Keys with the given status (None: every key), sorted."""
        if status is None:
            rows = self._db.execute("SELECT key FROM videos ORDER BY key")
        else:
            rows = self._db.execute("SELECT key FROM videos WHERE status = ? ORDER BY key", (status,))
        return [r[0] for r in rows]

    def counts(self) -> dict[str, int]:
        """Rows per status, e.g. {"ok": 10, "failed": 1}."""
        return dict(self._db.execute("SELECT status, COUNT(*) FROM videos GROUP BY status").fetchall())

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM videos").fetchone()[0])

    def __contains__(self, key: str) -> bool:
        return self.status(key) == "ok"

    def get(self, key: str) -> dict[str, np.ndarray]:
        """The stored arrays of one clip; `MissingFeatures` when it has none."""
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[str]) -> list[dict[str, np.ndarray]]:
        """Arrays of several clips in the order asked; each shard is opened once."""
        from safetensors import safe_open

        rows = {}
        for key in dict.fromkeys(keys):
            e = self.entry(key)
            if e is None or e.status != "ok" or e.shard is None:
                why = "no entry" if e is None else f"status {e.status}: {e.error}"
                raise MissingFeatures(f"{self.root}: no features for {key} ({why})")
            rows[key] = e
        by_shard: dict[str, list[StoreEntry]] = {}
        for e in rows.values():
            by_shard.setdefault(e.shard, []).append(e)  # type: ignore[arg-type]
        loaded: dict[str, dict[str, np.ndarray]] = {}
        for shard, group in by_shard.items():
            with safe_open(self._shard_path(shard), framework="np") as fh:
                for e in group:
                    loaded[e.key] = {f: fh.get_tensor(f"{e.slot}/{f}") for f in e.features}
        return [loaded[k] for k in keys]

    def iter_features(self, keys: Iterable[str] | None = None, chunk: int = 256) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        """(key, arrays) for every ok key (or the given ones), reading shard by shard."""
        todo = list(self.keys("ok") if keys is None else keys)
        for i in range(0, len(todo), chunk):
            part = todo[i : i + chunk]
            yield from zip(part, self.get_many(part), strict=True)

    def is_current(
        self, path: str | Path, start_s: float | None, end_s: float | None, encoder_name: str, encoder_version: str
    ) -> bool:
        """True when the clip's row (ok or failed) was made by this encoder version from the file as it
        is now: same size and mtime, or same size and content hash (a touched but unchanged file)."""
        e = self.entry(clip_key(path, start_s, end_s))
        if e is None or (e.encoder_name, e.encoder_version) != (encoder_name, encoder_version):
            return False
        try:
            st = Path(path).stat()
        except OSError:
            return False
        if st.st_size != e.size:
            return False
        return st.st_mtime_ns == e.mtime_ns or content_hash(path, st.st_size) == e.content_hash

    def verify(self) -> list[str]:
        """Problems found by opening every shard and every ok row's tensors (empty list: healthy)."""
        from safetensors import safe_open

        problems = []
        for e in self.entries():
            if e.status != "ok":
                continue
            try:
                with safe_open(self._shard_path(e.shard or ""), framework="np") as fh:
                    names = set(fh.keys())
                    for f in e.features:
                        if f"{e.slot}/{f}" not in names:
                            problems.append(f"{e.key}: tensor {e.slot}/{f} missing from shard {e.shard}")
                        else:
                            fh.get_tensor(f"{e.slot}/{f}")
            except Exception as exc:  # noqa: BLE001 - report every unreadable shard, don't stop
                problems.append(f"{e.key}: shard {e.shard} unreadable ({exc})")
        return problems

    # ----------------------------------------------------------------- writing
    @contextlib.contextmanager
    def writing(self, encoder: EncoderInfo, wait_s: float = 2.0) -> Iterator[FeatureStore]:
        """Hold the store's writer lock for `encoder`; refuses a store of another encoder name.
        `wait_s`: how long to wait for the lock (a reader cleaning up on open holds it briefly)."""
        self._acquire_lock(wait_s=wait_s)
        try:
            current = self.encoder
            if current is not None and current.name != encoder.name:
                raise TvrError(
                    f"{self.root}: store holds features of encoder {current.name!r}, not {encoder.name!r}; "
                    "use a separate --out directory per encoder"
                )
            self.clean()
            with self._transaction():
                self._set_meta("encoder_name", encoder.name)
                self._set_meta("encoder_version", encoder.version)
            yield self
            self.clean()
        finally:
            self._release_lock()

    def commit(self, done: Sequence[Extracted], failed: Sequence[Failure] = (), *, encoder: EncoderInfo) -> str | None:
        """Write `done` into one new shard and record `done` + `failed` in one transaction.
        Returns the shard name (None when `done` is empty). Caller must hold `writing()`."""
        if self._lock_fd is None:
            raise RuntimeError("FeatureStore.commit outside FeatureStore.writing()")
        shard = self._write_shard(done) if done else None
        now = time.time()
        rows = []
        for slot, d in enumerate(done):
            names = json.dumps(sorted(d.features))
            rows.append((d.key, d.path, d.start_s, d.end_s, d.identity.size, d.identity.mtime_ns,
                         d.identity.content_hash, d.duration_s, "ok", None, encoder.name, encoder.version,
                         shard, slot, names, now))
        for f in failed:
            rows.append((f.key, f.path, f.start_s, f.end_s, f.identity.size, f.identity.mtime_ns,
                         f.identity.content_hash, None, "failed", f.error, encoder.name, encoder.version,
                         None, None, None, now))
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO videos VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
        return shard

    def touch(self, key: str, identity: FileIdentity) -> None:
        """Record a new mtime for a row whose content hash still matches, so later checks skip hashing."""
        with self._transaction():
            self._db.execute(
                "UPDATE videos SET mtime_ns = ? WHERE key = ? AND size = ? AND content_hash = ?",
                (identity.mtime_ns, key, identity.size, identity.content_hash),
            )

    def clean(self) -> list[str]:
        """Delete temporary files and shards no row points at. Only safe with no writer active:
        call it holding `writing()` (it is also run on open when no writer holds the lock)."""
        referenced = {r[0] for r in self._db.execute("SELECT DISTINCT shard FROM videos WHERE shard IS NOT NULL")}
        removed = []
        for p in sorted((self.root / SHARD_DIR).iterdir()):
            stray_tmp = p.name.startswith(".")  # our temp files, and safetensors' own (".tmpXXXX")
            orphan = p.suffix == ".safetensors" and p.name not in referenced
            if stray_tmp or orphan:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                removed.append(p.name)
        return removed

    def close(self) -> None:
        self._release_lock()
        self._db.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- internals
    def _write_shard(self, done: Sequence[Extracted]) -> str:
        from safetensors.numpy import save_file

        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(6)}.safetensors"
        final = self._shard_path(name)
        tensors = {
            f"{slot}/{feat}": np.ascontiguousarray(arr)
            for slot, d in enumerate(done)
            for feat, arr in d.features.items()
        }
        tmp = temp_path_beside(final)
        try:
            save_file(tensors, str(tmp), metadata={"tvr_format": str(FORMAT_VERSION), "videos": str(len(done))})
            commit_temp(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return name

    def _shard_path(self, name: str) -> Path:
        return self.root / SHARD_DIR / name

    def _meta(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, name: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _acquire_lock(self, wait_s: float = 0.0) -> None:
        """Take the writer lock; a reader cleaning on open holds it briefly, hence `wait_s`."""
        if self._lock_fd is not None:
            return
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise TvrError(f"{self.root}: another process is writing this feature store") from None
                time.sleep(0.05)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _clean_if_idle(self) -> None:
        """Remove leftovers of a killed writer, unless a writer is running right now."""
        try:
            self._acquire_lock()
        except TvrError:
            return
        try:
            self.clean()
        finally:
            self._release_lock()


def _entry(row: tuple) -> StoreEntry:
    (key, path, start_s, end_s, size, mtime_ns, chash, duration_s, status, error,
     enc_name, enc_version, shard, slot, features, updated_s) = row
    return StoreEntry(
        key=key, path=path, start_s=start_s, end_s=end_s, size=size, mtime_ns=mtime_ns, content_hash=chash,
        duration_s=duration_s, status=status, error=error, encoder_name=enc_name, encoder_version=enc_version,
        shard=shard, slot=slot, features=tuple(json.loads(features)) if features else (), updated_s=updated_s,
    )
