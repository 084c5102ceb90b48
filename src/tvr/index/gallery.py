"""The stored gallery: every tensor field of a model's VideoEmb, so any model can re-score from disk.

Non-inner-product models (fine-grained tokens, experts, prototypes) score with `model.similarity`
on their own structured embedding; storing all of its tensor fields (dicts flattened as
"field/key") lets search rebuild the exact VideoEmb the model produced at index time.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import torch

from tvr.atomic import commit_temp, temp_path_beside
from tvr.errors import TvrError
from tvr.models.base import VideoEmb

_PREFIX = "emb."


def emb_class_name(emb: VideoEmb) -> str:
    cls = type(emb)
    return f"{cls.__module__}:{cls.__qualname__}"


def save_gallery(path: Path, emb: VideoEmb, vectors: torch.Tensor) -> None:
    """Write the embedding's tensor fields and the index vectors to one safetensors file, atomically."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {"vectors": vectors}
    layout: dict[str, object] = {}
    for f in dataclasses.fields(emb):
        value = getattr(emb, f.name)
        if isinstance(value, torch.Tensor):
            tensors[_PREFIX + f.name] = value
            layout[f.name] = "tensor"
        elif isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values()):
            for k, v in value.items():
                if "/" in str(k):
                    raise ValueError(f"embedding field {f.name} has a key with '/': {k!r}")
                tensors[f"{_PREFIX}{f.name}/{k}"] = v
            layout[f.name] = {"dict": list(map(str, value))}
        elif value is None or isinstance(value, (bool, int, float, str)):
            layout[f.name] = {"value": value}
        else:
            raise ValueError(f"cannot store embedding field {f.name} of type {type(value).__name__}")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    tmp = temp_path_beside(path)
    try:
        save_file(tensors, str(tmp), metadata={"emb_class": emb_class_name(emb), "layout": json.dumps(layout)})
        commit_temp(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_gallery(path: Path, emb_class: str, n_items: int) -> tuple[VideoEmb, torch.Tensor]:
    """(the VideoEmb, the index vectors) read back; shapes are checked against `n_items`."""
    from safetensors import safe_open

    cls = resolve_emb_class(emb_class, path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            layout = json.loads(meta.get("layout", "null"))
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises its own types for a corrupt header
        raise TvrError(f"{path}: unreadable gallery file ({exc})") from None
    if not isinstance(layout, dict) or "vectors" not in tensors:
        raise TvrError(f"{path}: not a tvr gallery file (no layout or vectors)")
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, object] = {}
    for name, how in layout.items():
        if name not in names:
            raise TvrError(f"{path}: field {name!r} is not a field of {cls.__name__}")
        if how == "tensor":
            kwargs[name] = tensors[_PREFIX + name]
        elif isinstance(how, dict) and "dict" in how:
            kwargs[name] = {k: tensors[f"{_PREFIX}{name}/{k}"] for k in how["dict"]}
        elif isinstance(how, dict) and "value" in how:
            kwargs[name] = how["value"]
        else:
            raise TvrError(f"{path}: bad layout entry for field {name!r}")
    emb = cls(**kwargs)
    vectors = tensors["vectors"]
    if len(emb) != n_items or vectors.shape[0] != n_items:
        raise TvrError(f"{path}: holds {len(emb)} embeddings / {vectors.shape[0]} vectors, index.json says {n_items}")
    return emb, vectors


def resolve_emb_class(name: str, where: Path) -> type[VideoEmb]:
    """The VideoEmb subclass named "module:QualName"; only classes inside the tvr package are accepted."""
    module, _, qual = name.partition(":")
    if not (module == "tvr" or module.startswith("tvr.")) or not qual:
        raise TvrError(f"{where}: embedding class {name!r} is not a tvr class")
    try:
        obj: object = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise TvrError(f"{where}: embedding class {name!r} does not exist in this tvr version") from None
    if not (isinstance(obj, type) and issubclass(obj, VideoEmb)):
        raise TvrError(f"{where}: {name!r} is not a video embedding class")
    return obj


class LazyGallery:
    """The stored gallery read on demand, so opening an index costs nothing per video.

    `select(rows)` reads only those rows from the memory-mapped file (the hits of a query, their
    per-frame vectors for the best moment); `full()` reads everything once, for the searches that
    need every row (non-inner-product re-scoring of the whole gallery); `field(name)` one field.
    """

    def __init__(self, path: Path, emb_class: str, n_items: int, device: torch.device | str = "cpu") -> None:
        from safetensors import safe_open

        self.path, self.n_items, self.device = Path(path), int(n_items), device
        self.cls = resolve_emb_class(emb_class, self.path)
        try:
            self._fh = safe_open(str(self.path), framework="pt")
            self._layout = json.loads((self._fh.metadata() or {}).get("layout", "null"))
            names = set(self._fh.keys())
        except Exception as exc:  # safetensors raises its own types for a corrupt header
            raise TvrError(f"{self.path}: unreadable gallery file ({exc})") from None
        if not isinstance(self._layout, dict) or "vectors" not in names:
            raise TvrError(f"{self.path}: not a tvr gallery file (no layout or vectors)")
        fields = {f.name for f in dataclasses.fields(self.cls)}
        for name, how in self._layout.items():
            if name not in fields:
                raise TvrError(f"{self.path}: field {name!r} is not a field of {self.cls.__name__}")
            if not (how == "tensor" or isinstance(how, dict) and ("dict" in how or "value" in how)):
                raise TvrError(f"{self.path}: bad layout entry for field {name!r}")
        for name in self._tensor_names():
            if name not in names:
                raise TvrError(f"{self.path}: tensor {name!r} is missing")
            rows = self._fh.get_slice(name).get_shape()[0]
            if rows != self.n_items:
                raise TvrError(f"{self.path}: holds {rows} rows of {name!r}, index.json says {self.n_items}")
        self._full: VideoEmb | None = None
        self._fields: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.n_items

    def _tensor_names(self) -> list[str]:
        names = ["vectors"]
        for name, how in self._layout.items():
            if how == "tensor":
                names.append(_PREFIX + name)
            elif "dict" in how:
                names += [f"{_PREFIX}{name}/{k}" for k in how["dict"]]
        return names

    def _build(self, read) -> VideoEmb:  # noqa: ANN001 - read(tensor name) -> Tensor
        kwargs: dict[str, object] = {}
        for name, how in self._layout.items():
            if how == "tensor":
                kwargs[name] = read(_PREFIX + name)
            elif "dict" in how:
                kwargs[name] = {k: read(f"{_PREFIX}{name}/{k}") for k in how["dict"]}
            else:
                kwargs[name] = how["value"]
        return self.cls(**kwargs).to(self.device)

    def select(self, rows) -> VideoEmb:  # noqa: ANN001 - a sequence of gallery rows
        rows = [int(r) for r in rows]
        if self._full is not None:
            return self._full.select(rows)
        if any(not 0 <= r < self.n_items for r in rows):
            raise TvrError(f"{self.path}: a gallery row out of range 0..{self.n_items - 1}")

        def read(name: str) -> torch.Tensor:
            part = self._fh.get_slice(name)
            if not rows:
                return part[0:0]
            return torch.cat([part[r : r + 1] for r in rows])

        return self._build(read)

    def field(self, name: str) -> torch.Tensor:
        """One stored tensor, whole ("vectors", or an embedding field such as "pooled"), kept once read."""
        key = name if name == "vectors" else _PREFIX + name
        if key not in self._fields:
            self._fields[key] = self._fh.get_tensor(key).to(self.device)
        return self._fields[key]

    def full(self) -> VideoEmb:
        if self._full is None:
            self._full = self._build(self._fh.get_tensor)
        return self._full
