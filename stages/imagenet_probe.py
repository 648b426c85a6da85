"""Stage ``imagenet_probe``: name the family of held-out models from their outputs (paper §7).

Folds hold out one model per family; for every fold, query draw and query count, the
family MLP is trained on the other architectures' models. Tasks run in parallel on the
executor. Writes ``reports/metrics/imagenet_probe.json`` (mode, accuracy per query count,
per family), the accuracy table and the confusion matrix as DVC plot data, and PNGs.
The logic is ``kennen.imagenet.run_probe.run``.
"""

from __future__ import annotations

from pathlib import Path

from kennen.config import load_params
from kennen.imagenet import run_probe
from stages._common import parser, run

ARGS = ("zoo", "metrics", "plots", "figures")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    for name in ARGS:
        p.add_argument(f"--{name}", required=True)
    return run(lambda a: run_probe.run(load_params(a.params), *(Path(getattr(a, n)) for n in ARGS)), p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
