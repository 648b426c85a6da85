"""Atomic file writes and small table/JSON helpers.

Every output is written to a temporary name in the target directory and moved
into place with :func:`os.replace`, so a killed stage never leaves a
half-written file behind (style.md rule 12).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    check_writable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer killed with SIGKILL
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp makes 0600, and a writer may recreate the file (safetensors does): give the output the
        # mode any other new file gets, 0666 less the umask, just before it takes its place
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_writable(path: str | os.PathLike, folder: bool = False) -> None:
    """A one-line KennenError unless ``path`` can be written: checked before a long computation that ends in it.

    Args:
        path: an output file (or, with ``folder``, an output folder); it and its parents may not exist yet.
        folder: ``path`` is a folder of outputs rather than one file.
    """
    from kennen.errors import KennenError

    path = Path(path)
    if not folder and path.is_dir():
        raise KennenError(f"{path}: is a folder; give the path of the file to write")
    if folder and path.exists() and not path.is_dir():
        raise KennenError(f"{path}: is a file; give a folder for the outputs")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise KennenError(f"{path}: {parent} is a file, not a folder; give an output path under a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise KennenError(f"{path}: the folder {parent} is not writable")


def _umask() -> int:
    """The process umask (read by setting it, then setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN is rejected: JSON has none)."""
    write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], fieldnames: Sequence[str]) -> None:
    """Atomically write ``rows`` as CSV with the given column order (booleans as 0/1)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fieldnames), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: int(v) if isinstance(v, bool) else v for k, v in row.items()} for row in rows)


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Read a CSV file into a list of string-valued dicts."""
    from kennen.errors import KennenError

    path = Path(path)
    if not path.is_file():
        raise KennenError(f"{path}: file not found (run the stage that writes it, or `dvc pull`)")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Atomically write an uncompressed, pickle-free ``.npz`` whose bytes depend only on the arrays.

    ``np.savez`` stamps each member with the current time; fixed stamps make reruns
    byte-identical, so DVC sees an unchanged output and downstream stages stay cached.
    """
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for key, array in arrays.items():
            with zf.open(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing or corrupt file (or NaN, Infinity: not JSON) is a one-line KennenError."""
    from kennen.errors import KennenError

    path = Path(path)
    try:
        return json.loads(path.read_text(), parse_constant=refuse_constant)
    except FileNotFoundError:
        raise KennenError(f"{path}: file not found (run the stage that writes it, or `dvc pull`)") from None
    except (OSError, ValueError) as e:
        raise KennenError(f"{path}: not valid JSON ({e})") from None


def refuse_constant(name: str) -> None:
    """``json.loads``'s ``parse_constant``: NaN, Infinity and -Infinity are not JSON numbers."""
    raise ValueError(f"{name} is not a JSON number")
