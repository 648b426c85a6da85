"""The ``kennen`` command line. ``kennen whiten TARGET``: see ``kennen/whiten.py``.

Output channels: stdout carries the report and nothing else (``--json`` stays parseable JSON: what
a trusted target prints goes to stderr, and so do torch's warnings, one line each); an error is
one line ``error: ...`` on stderr and exit 2; Ctrl-C is one line ``interrupted`` and exit 130.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

# Ctrl-C while torch is still importing (a second or two) is the same one line and exit 130: Python's
# default would print the traceback of whichever import it hit. Restored once the imports are done.
if (
    threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGINT) is signal.default_int_handler
):
    signal.signal(signal.SIGINT, lambda signum, frame: (sys.stderr.write("interrupted\n"), os._exit(130)))

if __name__ == "__main__":
    # ``python -m kennen.cli`` puts the current folder first on sys.path, so a stranger's ``yaml.py``
    # or ``numpy.py`` there would run on our own imports below, before --trust-code is read.
    for entry in ("", os.getcwd()):
        while entry in sys.path:
            sys.path.remove(entry)

import argparse
import contextlib
import json
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from kennen.defences import Defence, parse_defence
from kennen.errors import KennenError
from kennen.whiten import METHODS, OUTPUT_TYPES, load_target, whiten

if getattr(signal.getsignal(signal.SIGINT), "__module__", None) == __name__:  # ours, from the top
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the imports are done: main() words Ctrl-C


class _Parser(argparse.ArgumentParser):
    """Every usage error is one line ``error: ...`` on stderr and exit 2 (``--help`` still prints the help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _positive(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds above 0, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], got {text!r}")
    return value


def _defence(text: str) -> Defence:
    try:
        return parse_defence(text, "defence")
    except KennenError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("defence: ")) from None


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Each warning (torch's deprecations, a target's own) as one line ``warning: Category: text`` on stderr."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # warnings.showwarning's signature
        text = str(message).strip().splitlines()
        print(f"warning: {category.__name__}: {text[0][:300] if text else ''}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kennen", description="Reverse-engineer black-box MNIST classifiers.")
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser(
        "whiten",
        help="predict a black box's hidden attributes from its outputs",
        description="Query TARGET with a trained metamodel's images and predict its 12 attributes (paper Table 1).",
    )
    w.add_argument(
        "target", help="model.pt2 (torch.export), model.pt/.ts (TorchScript), module:callable, or http(s)://"
    )
    w.add_argument("--output-type", choices=OUTPUT_TYPES, default="prob", help="what the target returns per image")
    w.add_argument("--method", choices=METHODS, default="auto", help="metamodel (auto: best allowed by the output)")
    w.add_argument("--models", type=Path, default=Path("models"), help="folder of trained metamodels (default: models)")
    w.add_argument("--max-queries", type=_positive, default=None, help="never send more images than this")
    w.add_argument("--input-scale", choices=("normalised", "pixels"), default="normalised",
                   help="images as the target expects them: MNIST-normalised (default) or pixels in [0, 1]")  # fmt: skip
    w.add_argument("--batch-size", type=_positive, default=100, help="images per call or request")
    w.add_argument("--timeout", type=_seconds, default=10.0,
                   help="HTTP: seconds each attempt may take in all (connect, send, the whole answer)")  # fmt: skip
    w.add_argument(
        "--retries", type=_non_negative, default=3, help="HTTP retries on timeouts, connection errors, 429, 5xx"
    )
    w.add_argument("--trust-code", action="store_true",
                   help="allow a TorchScript file or a module:callable: their author's code runs here "
                   "(a .pt2 is inspected and an HTTP target runs nothing: neither needs it)")  # fmt: skip
    w.add_argument("--min-confidence", type=_probability, default=None,
                   help="answer 'unknown' below this calibrated probability (default: the metamodel's, chosen on "
                   "validation)")  # fmt: skip
    w.add_argument("--defence", type=_defence, default=None, metavar="NAME[:VALUE]",
                   help="apply an output defence to the target's scores first, e.g. round:2, topk:3, label, noise:0.05, "
                   "temperature:5, reverse_sigmoid:0.3, misinformation:0.9: what would that deployment give away?")  # fmt: skip
    w.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already printed in one line)
        return e.code if isinstance(e.code, int) else 2
    try:
        with contextlib.redirect_stdout(sys.stderr), _one_line_warnings():  # a trusted target's print
            box = load_target(args.target, args.timeout, args.retries, args.trust_code)
            report = whiten(
                box,
                args.target,
                args.output_type,
                args.method,
                args.models,
                args.max_queries,
                args.input_scale,
                args.batch_size,
                args.min_confidence,
                args.defence,
            )
    except KennenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(json.dumps(report.as_dict(), indent=1) if args.json else report.table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
