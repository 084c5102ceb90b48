"""Reading official annotation files with errors that name the file, line and field.

Benchmark modules use these instead of `json.load` / `csv.reader` so a malformed download gives one
actionable line (`file:line: field 'x' ...`) instead of a KeyError deep inside a converter.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tvr.errors import TvrError


def read_text(path: Path) -> str:
    """The file as UTF-8 text (a BOM is dropped)."""
    if not path.is_file():
        raise TvrError(f"{path}: annotation file not found (or not a file)")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TvrError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_json(path: Path) -> Any:
    """Parsed JSON; a syntax error names the line and column."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TvrError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno})") from None


def read_csv(path: Path, required: Sequence[str], delimiter: str = ",") -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) pairs of a CSV file with a header that must hold `required` columns."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    if reader.fieldnames is None:
        raise TvrError(f"{path}: empty CSV (no header)")
    header = [h.strip() for h in reader.fieldnames]
    reader.fieldnames = header
    for col in required:
        if col not in header:
            raise TvrError(f"{path}:1: CSV header lacks the column {col!r} (has: {', '.join(header)})")
    for row in reader:
        line_no = reader.line_num
        for col in required:
            if row.get(col) is None:
                raise TvrError(f"{path}:{line_no}: row has no value for column {col!r}")
        yield line_no, row


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) for non-blank lines that are not `#` comments."""
    for line_no, line in enumerate(read_text(path).splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield line_no, stripped


def read_name_list(path: Path) -> list[str]:
    """A list of video/clip names: plain text (one per line), a JSON list, or a CSV whose
    `video_id` column (else first column) holds the names. Order kept, duplicates dropped."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        doc = read_json(path)
        if not isinstance(doc, list) or not all(isinstance(x, str) for x in doc):
            raise TvrError(f"{path}: a JSON split list must be a list of strings")
        names = [x.strip() for x in doc]
    elif suffix == ".csv":
        reader = csv.reader(io.StringIO(read_text(path), newline=""))
        rows = [r for r in reader if r and any(c.strip() for c in r)]
        if not rows:
            raise TvrError(f"{path}: empty split list")
        header = [c.strip() for c in rows[0]]
        col = header.index("video_id") if "video_id" in header else 0
        names = []
        for i, row in enumerate(rows[1:], start=2):
            if col >= len(row):
                raise TvrError(f"{path}:{i}: row lacks the column {header[col]!r}")
            names.append(row[col].strip())
    else:
        names = [line.split()[0] for _, line in read_lines(path)]
    names = [n for n in dict.fromkeys(names) if n]
    if not names:
        raise TvrError(f"{path}: the split list names no videos")
    return names


def get_field(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """`obj[key]`, checked to be of `kind`; `where` names the file and position for the error."""
    if not isinstance(obj, Mapping):
        raise TvrError(f"{where}: expected a JSON object, got {_type_name(obj)}")
    if key not in obj:
        raise TvrError(f"{where}: field {key!r} is missing")
    value = obj[key]
    if not _is_kind(value, kind):
        raise TvrError(f"{where}: field {key!r} must be {_kind_name(kind)}, got {_type_name(value)}")
    return value


def get_text(obj: Any, key: str, where: str) -> str:
    """A non-empty string field, stripped."""
    value = get_field(obj, key, str, where).strip()
    if not value:
        raise TvrError(f"{where}: field {key!r} is an empty string")
    return value


def get_number(obj: Any, key: str, where: str) -> float:
    """A finite number field (JSON int or float, not bool)."""
    value = float(get_field(obj, key, (int, float), where))
    if not math.isfinite(value):
        raise TvrError(f"{where}: field {key!r} must be a finite number, got {value}")
    return value


def get_string_list(obj: Any, key: str, where: str) -> list[str]:
    """A list-of-strings field, each stripped."""
    values = get_field(obj, key, list, where)
    out = []
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise TvrError(f"{where}: field {key!r}[{i}] must be a string, got {_type_name(v)}")
        out.append(v.strip())
    return out


def as_number_pair(value: Any, where: str, key: str) -> tuple[float, float]:
    """A `[start, end]` pair of finite numbers."""
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(_is_kind(x, (int, float)) and math.isfinite(x) for x in value)
    ):
        raise TvrError(f"{where}: field {key!r} must be a [start, end] pair of numbers, got {value!r}")
    return float(value[0]), float(value[1])


def _is_kind(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False  # JSON true/false is not a number
    return isinstance(value, kinds)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def _type_name(value: Any) -> str:
    names = {str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object",
             bool: "a boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def infer_split(path: Path, patterns: Sequence[tuple[str, str]]) -> str:
    """The split an annotation file holds, from its official name: the first (substring, split)
    pattern found in the lower-cased file name wins, so list the longer substrings first."""
    name = path.name.lower()
    for needle, split in patterns:
        if needle in name:
            return split
    expected = ", ".join(f"'*{needle}*' -> {split}" for needle, split in patterns)
    raise TvrError(f"{path}: cannot tell the split from the file name; expected one of {expected}")
