"""The index's vectors in Milvus: milvus-lite embedded in a local file, or a Milvus server or cluster.

The same `VectorIndex` interface as FAISS (build, search, save, load), so `tvr index`, `tvr search`,
`tvr serve` and incremental updates work unchanged with `--backend milvus --uri URI`. A URI that is
a file path (`./idx/milvus.db`) runs milvus-lite inside the process; `http://HOST:19530` reaches a
server. Each index generation writes its own collection(s), named after the index folder and the
generation; the generation's file for the role is a small JSON descriptor (URI, collection, count,
dimension) in place of a FAISS file, checksummed like every file. Committing a new generation
drops the old generation's collections (`drop_described`), so the database holds exactly what
index.json names. Vectors are stored with an inner-product index; the IS-folded vectors go to a
second collection, so IS/DIS stay exact under the database's search (DESIGN §4).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from tvr.atomic import atomic_write_bytes
from tvr.errors import TvrError

DESCRIPTOR_SUFFIX = ".milvus.json"
INSERT_BATCH = 5_000
_INDEX_TYPES = {"flat": ("FLAT", {}), "hnsw": ("HNSW", {"M": 32, "efConstruction": 80}), "ivf": ("IVF_FLAT", {})}
_clients: dict[str, Any] = {}  # one client per URI and process (milvus-lite opens its file once)


def client_for(uri: str) -> Any:
    """A MilvusClient for `uri` (a milvus-lite file path is made absolute first)."""
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise TvrError("the Milvus backend needs pymilvus and milvus-lite: pip install -e .[milvus]") from None
    key = normalise_uri(uri)
    if key not in _clients:
        try:
            _clients[key] = MilvusClient(key)
        except Exception as exc:  # pymilvus raises its own types for an unreachable server or a bad file
            raise TvrError(f"cannot connect to Milvus at {key} ({str(exc).splitlines()[0]})") from None
    return _clients[key]


def normalise_uri(uri: str) -> str:
    if "://" in uri:
        return uri
    path = Path(uri).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path.resolve())


def collection_name(index_dir: Path, data_dir: str, role: str) -> str:
    """A collection name Milvus accepts (letters, digits, underscores), unique per index and generation."""
    stem = re.sub(r"[^A-Za-z0-9_]", "_", f"tvr_{Path(index_dir).resolve().name}_{data_dir}_{role}")
    digest = hashlib.sha256(str(Path(index_dir).resolve()).encode()).hexdigest()[:8]
    return f"{stem[:200]}_{digest}"


class MilvusIndex:
    """Top-k inner-product search in one Milvus collection; ids are gallery rows."""

    def __init__(self, uri: str, collection: str, n: int, dim: int, spec: Any) -> None:
        self.uri, self.collection, self.n, self._dim, self.spec = normalise_uri(uri), collection, n, dim, spec

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return self.n

    @classmethod
    def build(cls, vectors: np.ndarray, spec: Any, *, uri: str, collection: str) -> MilvusIndex:
        from pymilvus import DataType

        x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if x.ndim != 2 or not len(x) or not np.isfinite(x).all():
            raise TvrError(f"gallery vectors must be a finite non-empty 2-D array, got shape {x.shape}")
        kind = spec.resolved(len(x)).kind
        index_type, params = _INDEX_TYPES.get(kind, _INDEX_TYPES["flat"])  # compressed FAISS kinds: exact here
        client = client_for(uri)
        if client.has_collection(collection):
            client.drop_collection(collection)  # a leftover of an interrupted build of this generation
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)  # the gallery row
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=int(x.shape[1]))
        index_params = client.prepare_index_params()
        index_params.add_index(field_name="vec", index_type=index_type, metric_type="IP", params=params)
        client.create_collection(collection, schema=schema, index_params=index_params)
        for lo in range(0, len(x), INSERT_BATCH):
            rows = x[lo : lo + INSERT_BATCH]
            client.insert(collection, [{"id": lo + i, "vec": v} for i, v in enumerate(rows.tolist())])
        client.load_collection(collection)
        return cls(uri, collection, len(x), int(x.shape[1]), spec)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise TvrError(f"query vectors have shape {q.shape}, the index holds dimension {self.dim}")
        k = max(1, min(int(k), self.n))
        client = client_for(self.uri)
        results = client.search(self.collection, data=q.tolist(), limit=k, anns_field="vec",
                                search_params={"metric_type": "IP"}, output_fields=["id"])
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        for i, hits in enumerate(results):
            for j, hit in enumerate(hits[:k]):
                ids[i, j] = int(hit["id"])
                scores[i, j] = float(hit["distance"])
        return scores, ids

    def save(self, path: str | Path) -> str:
        """Write the descriptor atomically; returns its sha256."""
        doc = {"backend": "milvus", "uri": self.uri, "collection": self.collection, "n": self.n, "dim": self.dim,
               "metric": "IP"}
        data = json.dumps(doc, indent=2).encode()
        atomic_write_bytes(path, data)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def load(cls, path: str | Path, spec: Any, sha256: str | None = None) -> MilvusIndex:
        doc = read_descriptor(Path(path), sha256)
        client = client_for(doc["uri"])
        if not client.has_collection(doc["collection"]):
            raise TvrError(f"{path}: Milvus at {doc['uri']} has no collection {doc['collection']!r} (dropped?); rebuild the index")
        client.load_collection(doc["collection"])
        count = int(client.get_collection_stats(doc["collection"]).get("row_count", -1))
        if count != int(doc["n"]):
            raise TvrError(f"{path}: collection {doc['collection']!r} holds {count} vectors, the index {doc['n']}")
        return cls(doc["uri"], doc["collection"], int(doc["n"]), int(doc["dim"]), spec)


def read_descriptor(path: Path, sha256: str | None = None) -> dict[str, Any]:
    from tvr.index.vector_index import read_index_file

    data = read_index_file(Path(path), sha256)
    try:
        doc = json.loads(data)
        assert doc["backend"] == "milvus" and isinstance(doc["collection"], str) and isinstance(doc["uri"], str)
    except (ValueError, KeyError, AssertionError, TypeError):
        raise TvrError(f"{path}: not a tvr Milvus descriptor") from None
    return doc


def drop_described(data_dir: Path) -> None:
    """Drop the collections a generation's descriptors name (the generation is being deleted)."""
    for path in Path(data_dir).glob(f"*{DESCRIPTOR_SUFFIX}"):
        try:
            doc = read_descriptor(path)
            client = client_for(doc["uri"])
            if client.has_collection(doc["collection"]):
                client.drop_collection(doc["collection"])
        except TvrError:
            continue  # an unreadable descriptor of a stale generation: nothing to drop


def close_clients() -> None:
    """Close every client this process opened, and stop the milvus-lite servers it started, so another
    process can open their database files."""
    while _clients:
        uri, client = _clients.popitem()
        try:
            client.close()
        except Exception:  # noqa: BLE001 - closing a client whose server is gone must not raise
            pass
        if "://" not in uri:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(uri)
