"""Encoder names → classes; each encoder module registers itself (`@VIDEO_ENCODERS.register("x")`).

An encoder class has a frozen-dataclass `config_cls` and is built as `cls(config)`. Options may come
from the command line as strings; `build_config` converts them to the field types and names the
option that is wrong.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from tvr.encoders.base import TextEncoder, VideoEncoder
from tvr.errors import TvrError
from tvr.registry import Registry

VIDEO_ENCODERS: Registry[type[VideoEncoder]] = Registry("video encoder", package="tvr.encoders")
TEXT_ENCODERS: Registry[type[TextEncoder]] = Registry("text encoder", package="tvr.encoders")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def create_video_encoder(name: str, **options: Any) -> VideoEncoder:
    """A registered video encoder with `options` applied to its config (unknown option → TvrError)."""
    cls = VIDEO_ENCODERS.get(name)
    return cls(build_config(cls.config_cls, options, what=f"video encoder {name!r}"))  # type: ignore[attr-defined]


def create_text_encoder(name: str, **options: Any) -> TextEncoder:
    """A registered text encoder with `options` applied to its config."""
    cls = TEXT_ENCODERS.get(name)
    return cls(build_config(cls.config_cls, options, what=f"text encoder {name!r}"))  # type: ignore[attr-defined]


def encoder_names() -> dict[str, list[str]]:
    """{"video": [...], "text": [...]}, sorted."""
    return {"video": VIDEO_ENCODERS.names(), "text": TEXT_ENCODERS.names()}


def describe_encoders() -> list[dict[str, Any]]:
    """One record per registered encoder: name, kind, summary, outputs and config defaults."""
    rows = []
    for kind, registry in (("video", VIDEO_ENCODERS), ("text", TEXT_ENCODERS)):
        for name, cls in registry.items():
            doc = (cls.__doc__ or "").strip().splitlines()
            config = {f.name: _default_of(f) for f in dataclasses.fields(cls.config_cls)}  # type: ignore[attr-defined]
            rows.append(
                {
                    "name": name,
                    "kind": kind,
                    "summary": doc[0] if doc else "",
                    "outputs": list(getattr(cls, "outputs", ())),
                    "options": config,
                }
            )
    return rows


def build_config(config_cls: type, options: Mapping[str, Any], *, what: str = "encoder") -> Any:
    """`config_cls(**options)` with string values converted to the field types."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    hints = typing.get_type_hints(config_cls)
    values = {}
    for key, value in options.items():
        if key not in fields:
            raise TvrError(f"{what} has no option {key!r}; options: {', '.join(sorted(fields))}")
        values[key] = _convert(value, hints[key], key, what)
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise TvrError(f"{what}: {exc}") from None


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return None
    return list(value) if isinstance(value, tuple) else value


def _convert(value: Any, hint: Any, key: str, what: str) -> Any:
    """Convert a command-line string to `hint` (bool/int/float/str, optionally `| None`)."""
    if not isinstance(value, str):
        return value
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    target = next((a for a in args if a is not type(None)), str) if optional else hint
    if optional and value.lower() in {"", "none", "null"}:
        return None
    try:
        if target is bool:
            low = value.lower()
            if low in _TRUE | _FALSE:
                return low in _TRUE
            raise ValueError(value)
        if target in (int, float):
            return target(value)
    except ValueError:
        raise TvrError(f"{what}: option {key!r} expects {getattr(target, '__name__', target)}, got {value!r}") from None
    return value
