"""Stage ``kennen_i``: craft kennen-i's queries on the R split's training boxes; evaluate by top-1 label on its test boxes.

The headline target (``kennen_i.target``) and every variant run as parallel tasks
on the executor (``KENNEN_EXECUTOR``). Writes the headline metrics
(``acc.<attribute>``, ``acc.mean``, each with its 95% bootstrap interval over the
test boxes, ``_low``/``_high``; ``in_range``; plus ``<target>.acc.mean`` and its
interval for every target), a per-target table, confusion matrices, the crafted images as
arrays (``models/kennen_i.safetensors``) and as a PNG grid, and DVCLive loss curves. Crafting holds out
``calibration.val_fraction`` of the training boxes (ours); the headline's answers are calibrated on them
(``ece_before``/``ece_after``, abstention and out-of-zoo figures, ``reliability.csv``,
``risk_coverage.csv``, ``reliability.png``; ``kennen.metamodel.calibration``).

The logic is ``kennen.metamodel.run_kennen_i.run``, written out by ``kennen.metamodel.runner``.
"""

from __future__ import annotations

from pathlib import Path

from kennen.config import load_params
from kennen.metamodel import run_kennen_i
from kennen.metamodel.runner import OUTPUTS, Outputs
from stages._common import parser, run


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    for name in ("data", "boxes", "models", "shards", "splits", *OUTPUTS):
        p.add_argument(f"--{name}", required=True)

    def body(a) -> None:
        inputs = (Path(a.data), Path(a.boxes), Path(a.models), Path(a.shards), Path(a.splits))
        run_kennen_i.run(load_params(a.params), *inputs, Outputs.of(a))

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
