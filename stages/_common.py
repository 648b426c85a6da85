"""What every stage script shares: argument parsing of ``--params``, logging, one-line errors.

One line, never a traceback, for what the user can fix: a :class:`KennenError` (bad params or files, a
worker that died), Ctrl-C (exit 130) and a full disk or exhausted quota. Outputs are written atomically
(``kennen.io.atomic_path``), so each of these leaves every output either whole or absent.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Callable

from kennen.errors import KennenError
from kennen.log import setup_logging


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return p


def run(body: Callable[[argparse.Namespace], None], p: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse ``argv``, run ``body``; a KennenError or a full disk becomes one line on stderr and exit code 2."""
    args = p.parse_args(argv)
    setup_logging()
    try:
        body(args)
    except KennenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if not _disk_full(e):
            raise
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        message = "no space left on the disk (or quota exceeded): free some and rerun"
        print(f"error: {where}{message}; finished outputs are kept, nothing is half-written", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        logging.getLogger("kennen").warning("interrupted: finished outputs are kept, nothing is half-written")
        return 130
    return 0


def _disk_full(e: BaseException) -> bool:
    """ENOSPC or EDQUOT, raised by Python (OSError) or by safetensors' Rust writer (its message carries the code)."""
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    return any(f"(os error {code})" in str(e) for code in (errno.ENOSPC, errno.EDQUOT))
