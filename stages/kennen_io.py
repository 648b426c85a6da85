"""Stage ``kennen_io``: kennen-io cross-validated over configurations (the headline), on the R split (Table 2)
and on the E splits named in ``kennen_io.splits`` (Table 3).

One task per fold of ``data/splits/folds.json`` and one on every box (both with ``kennen_io.cv_schedule``),
one per metamodel seed of the R split (``kennen_io.seeds``) and one per E split, run in parallel on the
executor (``KENNEN_EXECUTOR``), the longest first. Writes, first, the ``cv`` block: every box predicted
once by the fold's kennen-io that never saw its configuration, accuracies over boxes (``cv.acc.*``) and
over configurations (``cv.acc_config.*``) with 95% intervals that resample configurations, ``cv.n_boxes``,
``cv.n_configs``, ``cv.k``; the warm start's (kennen-o with kennen-io's seed) means ``cv.o.*`` and the
paired gap ``cv.gap_vs_o.*``; then the R split's metrics (``acc.<attribute>``, ``acc.mean`` with their
intervals over the test boxes' configurations; ``gap_vs_o.*``; ``queries.moved`` and ``query_phase<i>.*``,
how far the queries moved and what that did to the training loss; ``seeds.*`` with two or more seeds),
every E split's mean with its interval and its relative accuracy (``<split>.acc_mean``,
``<split>.relative``), the Table 3 rows, a per-phase log of every task (``phases.csv``), the out-of-fold
predictions (``cv_predictions.csv``) and their confusion matrices. The saved metamodel
(``models/kennen_io.safetensors``: MLP weights and queries) is the one trained on every box, its
``test_accuracy`` the cross-validated figures; it is calibrated on the out-of-fold logits of every box
(``ece_before``/``ece_after``, abstention and out-of-zoo figures, ``reliability.csv``,
``risk_coverage.csv``, ``reliability.png``; ``kennen.metamodel.calibration``). Also a PNG of sample
queries before and after training, and DVCLive loss curves of the saved metamodel.

``--headline`` repeats the cross-validated means over configurations and over boxes, their intervals and
``cv.n_boxes``/``cv.n_configs`` (``runner.HEADLINE``), listed first in dvc.yaml so that ``dvc metrics diff``
leads with them.

The logic is ``kennen.metamodel.run_kennen_io.run``, written out by ``kennen.metamodel.runner``.
"""

from __future__ import annotations

from pathlib import Path

from kennen.config import load_params
from kennen.metamodel import run_kennen_io
from kennen.metamodel.runner import OUTPUTS, Outputs
from stages._common import parser, run


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    for name in ("data", "outputs", "boxes", "models", "shards", "splits", *OUTPUTS):
        p.add_argument(f"--{name}", required=True)

    def body(a) -> None:
        inputs = (Path(a.data), Path(a.outputs), Path(a.boxes), Path(a.models), Path(a.shards), Path(a.splits))
        run_kennen_io.run(load_params(a.params), *inputs, Outputs.of(a))

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
