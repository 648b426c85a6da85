"""What every stage script shares: argument parsing of ``--params``, logging, one-line errors."""

from __future__ import annotations

import argparse
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
    """Parse ``argv``, run ``body``; a KennenError becomes one line on stderr and exit code 2."""
    args = p.parse_args(argv)
    setup_logging()
    try:
        body(args)
    except KennenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        logging.getLogger("kennen").warning("interrupted: finished outputs are kept, nothing is half-written")
        return 130
    return 0
