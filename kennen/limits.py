"""Bounded reads of what a stranger may have crafted: archives, JSON files, HTTP answers, ``.npz`` files.

``kennen whiten`` reads a target someone else made (a ``.pt2`` archive, an HTTP endpoint's
answers) and metamodel files someone may have handed over. Each read is bounded before the bytes
are parsed, so that a small zip bomb, an endless answer or JSON nested a million deep is a one-line
refusal instead of a MemoryError, a RecursionError or a machine out of memory.

Each limit has a default and an environment variable that overrides it (read at each check, so a
test or a shell can change it):

==========================  =======  =========================================================
variable                    default  bounds
==========================  =======  =========================================================
KENNEN_MAX_ARCHIVE_MB       256      a ``.pt2`` file, and the sum of its members' declared sizes
KENNEN_MAX_ARCHIVE_MEMBERS  1000     the members of a ``.pt2`` archive
KENNEN_MAX_ARCHIVE_RATIO    100      a member's declared size over its compressed size (1 MB up)
KENNEN_MAX_JSON_MB          8        a JSON file or archive member
KENNEN_MAX_JSON_DEPTH       64       the nesting of JSON arrays and objects
KENNEN_MAX_ANSWER_MB        8        the body of one HTTP answer
==========================  =======  =========================================================

MB here is 2**20 bytes. A refusal is a :class:`KennenError` of one line that names the file, the
limit, the value found and the variable that raises it.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from kennen.errors import KennenError
from kennen.io import refuse_constant

MB = 2**20
CHUNK = 64 * 1024
RATIO_FLOOR = MB  # members smaller than this are not ratio-checked: the archive's total bounds them


@dataclass(frozen=True)
class Limit:
    """One bound: its environment variable, its default and what it bounds (for the refusal's wording)."""

    env: str
    default: int
    what: str
    unit: str = ""

    def value(self) -> int:
        """The bound in force: the environment variable's value if set, else the default."""
        text = os.environ.get(self.env)
        if text is None or not text.strip():
            return self.default
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < 1:
            raise KennenError(f"{self.env}: expected a positive integer, got {text!r}")
        return value

    def bytes(self) -> int:
        """The bound in bytes (a limit in MB)."""
        return self.value() * MB

    def refuse(self, source: object | None, found: str) -> KennenError:
        """The one-line refusal: ``source: found; the limit on what is N unit (set ENV to raise it)``."""
        unit = f" {self.unit}" if self.unit else ""
        prefix = "" if source is None else f"{source}: "
        return KennenError(
            f"{prefix}{found}; the limit on {self.what} is {self.value()}{unit} (set {self.env} to raise it)"
        )


ARCHIVE_MB = Limit("KENNEN_MAX_ARCHIVE_MB", 256, "a .pt2 archive (file and unpacked members)", "MB")
ARCHIVE_MEMBERS = Limit("KENNEN_MAX_ARCHIVE_MEMBERS", 1000, "the members of a .pt2 archive")
ARCHIVE_RATIO = Limit("KENNEN_MAX_ARCHIVE_RATIO", 100, "the compression ratio of an archive member")
JSON_MB = Limit("KENNEN_MAX_JSON_MB", 8, "a JSON file", "MB")
JSON_DEPTH = Limit("KENNEN_MAX_JSON_DEPTH", 64, "the nesting depth of JSON")
ANSWER_MB = Limit("KENNEN_MAX_ANSWER_MB", 8, "an HTTP answer's body", "MB")
LIMITS = (ARCHIVE_MB, ARCHIVE_MEMBERS, ARCHIVE_RATIO, JSON_MB, JSON_DEPTH, ANSWER_MB)

PICKLED = "holds pickled objects; kennen reads plain arrays only"

# A JSON string (escapes included), to be blanked out before brackets are counted.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def megabytes(n: int) -> str:
    """``n`` bytes as text for a refusal: ``9.5 MB``."""
    return f"{n / MB:.1f} MB"


def read_bounded(path: Path, limit: Limit = JSON_MB) -> bytes:
    """The bytes of the file at ``path``, refused (before reading, by its size) past ``limit`` MB.

    The read itself stops one byte past the limit, so a file that grows meanwhile (or a device
    that reports no size) cannot slip through.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit.bytes():
                raise limit.refuse(path, f"the file holds {megabytes(size)}")
            return read_stream(f, limit, path)
    except FileNotFoundError:
        raise KennenError(f"{path}: file not found") from None
    except OSError as e:
        raise KennenError(f"{path}: cannot read the file ({e.strerror or e})") from None


def read_stream(stream: BinaryIO, limit: Limit, source: object, noun: str = "the file") -> bytes:
    """Everything ``stream`` holds, read in chunks and refused as soon as it passes ``limit`` MB."""
    cap, chunks, total = limit.bytes(), [], 0
    while chunk := stream.read(CHUNK):
        total += len(chunk)
        if total > cap:
            raise limit.refuse(source, f"{noun} goes on past {megabytes(cap)}")
        chunks.append(chunk)
    return b"".join(chunks)


def json_depth(data: bytes | str) -> int:
    """How deeply ``data``'s arrays and objects nest, counted without parsing (no recursion).

    Strings are blanked out first so that brackets inside them do not count; the count of the rest
    is a running sum over the bytes (numpy), so a large file costs milliseconds.
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    bare = np.frombuffer(_STRING.sub(b'""', raw), dtype=np.uint8)
    step = np.zeros(len(bare), dtype=np.int64)
    step[(bare == ord("[")) | (bare == ord("{"))] = 1
    step[(bare == ord("]")) | (bare == ord("}"))] = -1
    return int(np.cumsum(step).max(initial=0))


def loads_bounded(data: bytes | str, source: object, size: Limit = JSON_MB, depth: Limit = JSON_DEPTH) -> Any:
    """``json.loads(data)`` once ``data`` is within ``size`` MB and nests at most ``depth`` deep.

    Raises:
        KennenError: past a limit (one line naming ``source``).
        ValueError: not JSON (``json.JSONDecodeError`` or ``UnicodeDecodeError``), for the caller to word.
    """
    n = len(data.encode() if isinstance(data, str) else data)
    if n > size.bytes():
        raise size.refuse(source, f"{megabytes(n)} of JSON")
    found = json_depth(data)
    if found > depth.value():
        raise depth.refuse(source, f"nesting {found} deep")
    return json.loads(data, parse_constant=refuse_constant)


def read_json_bounded(path: Path) -> Any:
    """The JSON file at ``path``, bounded by ``KENNEN_MAX_JSON_MB`` and ``KENNEN_MAX_JSON_DEPTH``."""
    path = Path(path)
    data = read_bounded(path, JSON_MB)
    try:
        return loads_bounded(data, path)
    except ValueError as e:
        raise KennenError(f"{path}: not valid JSON ({e})") from None


def check_archive(infos: list[zipfile.ZipInfo], source: object | None = None) -> None:
    """Refuse a zip by its central directory, before any member is read: member count, total and ratios.

    The sizes are those the directory declares; the readers (Python's ``zipfile``, torch's miniz)
    stop at the declared size, so bounding the declared sizes bounds what unpacking allocates.
    """
    if len(infos) > ARCHIVE_MEMBERS.value():
        raise ARCHIVE_MEMBERS.refuse(source, f"{len(infos)} members")
    total = sum(i.file_size for i in infos)
    if total > ARCHIVE_MB.bytes():
        raise ARCHIVE_MB.refuse(source, f"its members unpack to {megabytes(total)}")
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= RATIO_FLOOR and ratio > ARCHIVE_RATIO.value():
            found = f"member {info.filename} unpacks to {megabytes(info.file_size)}, {ratio:.0f} times its packed size"
            raise ARCHIVE_RATIO.refuse(source, found)


def load_arrays(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the ``.npz`` at ``path``, never unpickled.

    An object array is a one-line KennenError (numpy's own message suggests loading it unsafely);
    a missing file, a missing key or a corrupt file raise numpy's and zipfile's exceptions for the
    caller to word.
    """
    with np.load(path, allow_pickle=False) as z:
        try:
            return {k: z[k] for k in keys}
        except ValueError as e:
            if "allow_pickle" in str(e):
                raise KennenError(f"{path}: {PICKLED}") from None
            raise
