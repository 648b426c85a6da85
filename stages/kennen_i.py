"""Stage ``kennen_i``: craft kennen-i's queries, cross-validated over configurations (the headline) and on the
R split, read out by top-1 label.

Every target (``kennen_i.target`` and the variants) is crafted once per fold of
``data/splits/folds.json``, once on every box and once on the R split's training boxes, as parallel
tasks on the executor (``KENNEN_EXECUTOR``), the longest first. Writes, first, the headline target's
``cv`` block: every box read on the images crafted without its configuration, accuracies over boxes
(``cv.acc.*``) and over configurations (``cv.acc_config.*``) with 95% intervals that resample
configurations, ``cv.n_boxes``, ``cv.n_configs``, ``cv.k``, ``cv.in_range``, and every target's means
(``cv.<target>.acc.mean``, ``cv.<target>.acc_config.mean``); then the R split's metrics
(``acc.<attribute>``, ``acc.mean`` with intervals over the test boxes' configurations, ``in_range``,
``<target>.acc.mean`` for every target), a per-target table, the out-of-fold predictions
(``cv_predictions.csv``) and their confusion matrices. The saved images (``models/kennen_i.safetensors``,
and a PNG grid) are crafted on every box, their ``test_accuracy`` the cross-validated figures; the
headline's answers are calibrated on the out-of-fold answers of every box (``ece_before``/``ece_after``,
abstention and out-of-zoo figures, ``reliability.csv``, ``risk_coverage.csv``, ``reliability.png``;
``kennen.metamodel.calibration``). Also DVCLive loss curves of the saved images' crafting.

``--headline`` repeats the cross-validated means over configurations and over boxes, their intervals and
``cv.n_boxes``/``cv.n_configs`` (``runner.HEADLINE``), listed first in dvc.yaml so that ``dvc metrics diff``
leads with them.

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
