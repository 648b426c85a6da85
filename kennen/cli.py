"""The ``kennen`` command line. ``kennen whiten TARGET``: see ``kennen/whiten.py``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kennen.errors import KennenError
from kennen.whiten import METHODS, OUTPUT_TYPES, load_target, whiten


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kennen", description="Reverse-engineer black-box MNIST classifiers.")
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
    w.add_argument("--timeout", type=_positive_float, default=10.0, help="HTTP timeout per request, seconds")
    w.add_argument(
        "--retries", type=_non_negative, default=3, help="HTTP retries on timeouts, connection errors, 429, 5xx"
    )
    w.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        box = load_target(args.target, args.timeout, args.retries)
        report = whiten(
            box,
            args.target,
            args.output_type,
            args.method,
            args.models,
            args.max_queries,
            args.input_scale,
            args.batch_size,
        )
    except KennenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.as_dict(), indent=1) if args.json else report.table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
