"""Stage ``defences``: what defended outputs, and the weights, give away (``kennen.metamodel.ladder``).

Every ``defences.settings`` entry is applied to the stored outputs of every box; per setting the
metrics give its utility (top-1 agreement, accuracy change, KL) and kennen-o's accuracy for a
non-adaptive and an adaptive attacker, with 95% bootstrap intervals over the R split's test boxes.
The ``whitebox`` row is the weight-statistics metamodel (``kennen.metamodel.weights``); the
``label_kennen_i`` row is the ``kennen_i`` stage's result (its crafted queries are answered with
labels, so the label-only defence changes nothing it reads). Writes the
metrics, ``privacy_utility.csv`` and ``attributes.csv`` plot data, and ``privacy_utility.png``.
The logic is ``kennen.metamodel.run_defences.run``.
"""

from __future__ import annotations

from pathlib import Path

from kennen.config import load_params
from kennen.metamodel import run_defences
from stages._common import parser, run

ARGS = ("data", "outputs", "boxes", "splits", "models", "shards", "kennen-i", "metrics", "plots", "figures")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    for name in ARGS:
        p.add_argument(f"--{name}", required=True)

    def body(a) -> None:
        run_defences.run(load_params(a.params), *(Path(getattr(a, n.replace("-", "_"))) for n in ARGS))

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
