"""Crash-safe file writes: append-only JSON lines and atomic whole-file replacement.

A training job can be killed (SIGKILL, node failure) at any instant. The records must then hold
only complete lines, and a file that is rewritten (spec, pointer, checkpoint) must be either the
old or the new version, never half of each.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO


def _to_json_value(value: Any) -> Any:
    """`json.dumps` fallback for numpy and torch scalars and paths."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to a JSON record: {value!r}")


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One JSON object on one line, newline-terminated, keys in insertion order.

    Non-finite floats are written as `NaN` / `Infinity` (Python's json reads them back), because a
    diverged loss is a fact worth recording.
    """
    line = json.dumps(dict(record), default=_to_json_value, separators=(",", ":"))
    if "\n" in line:  # json.dumps escapes newlines inside strings; this cannot happen
        raise ValueError("a record must encode to a single line")
    return (line + "\n").encode("utf-8")


def _ends_with_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    if size == 0:
        return True
    return os.pread(fd, 1, size - 1) == b"\n"


def append_jsonl(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append one record as one line: one `write`, then flush and fsync.

    A single `write` on an `O_APPEND` descriptor puts the whole line at the end of the file in one
    piece, so a kill leaves either the complete line or (at worst, e.g. a full disk) a fragment
    without its newline. If an earlier writer left such a fragment, this line starts on a fresh
    line so that it stays readable; `read_jsonl` skips the fragment.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = encode_record(record)
    # O_RDWR (not O_WRONLY) so that pread can look at the last byte; O_APPEND keeps writes at the end.
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if not _ends_with_newline(fd):
            data = b"\n" + data
        written = os.write(fd, data)
        while written < len(data):  # only on a full disk or a signal; finish the line if we can
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def iter_jsonl(path: str | Path) -> Iterator[dict]:
    """Yield the records of a JSON-lines file, skipping lines a kill left incomplete.

    A trailing line without its newline is skipped silently (the writer was killed mid-line); an
    unreadable line in the middle is skipped with a warning naming the file and line number.
    """
    path = Path(path)
    if not path.exists():
        return
    lines = path.read_bytes().split(b"\n")
    last = len(lines) - 1  # the text after the final newline: b"" or a partial line
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            if number - 1 != last:
                warnings.warn(f"{path}:{number}: skipped an unreadable record", stacklevel=2)
            continue
        if number - 1 == last:  # parsed, but the newline never made it: still incomplete
            continue
        if isinstance(record, dict):
            yield record


def read_jsonl(path: str | Path) -> list[dict]:
    """All complete records of a JSON-lines file (an empty list when it does not exist)."""
    return list(iter_jsonl(path))


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Replace `path` with `data` so that readers see the old or the new file, never a mix."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_writer(path) as handle:
        handle.write(data)


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file handle whose content replaces `path` only when the block ends normally.

    Writes a temporary file in the same directory, fsyncs it, renames it over `path` (atomic on
    POSIX), then fsyncs the directory so the rename itself survives a power cut. On an exception
    (or a kill) `path` keeps its old content and the temporary file is removed (or left as
    `.<name>.*.tmp`, which no reader looks at).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: str | Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: str | Path, obj: Mapping[str, Any]) -> None:
    text = json.dumps(dict(obj), default=_to_json_value, indent=2, sort_keys=False)
    write_atomic(path, text + "\n")


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
