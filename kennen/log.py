"""Logging and progress for stages: stdlib logging to stderr, tqdm on terminals only."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def setup_logging() -> None:
    """Timestamped lines on stderr; level from ``KENNEN_LOG_LEVEL`` (default INFO)."""
    level = os.environ.get("KENNEN_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level if level in logging._nameToLevel else "INFO",
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        force=True,
    )


def progress(items: Iterable[T], total: int, desc: str, log: logging.Logger, every_s: float = 30.0) -> Iterator[T]:
    """A tqdm bar on a terminal; otherwise a log line at most every ``every_s`` seconds and at the end."""
    if sys.stderr.isatty():
        yield from tqdm(items, total=total, desc=desc, mininterval=1.0)
        return
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every_s or done == total:
            log.info("%s: %d/%d done, %.0f s", desc, done, total, now - start)
            last = now
