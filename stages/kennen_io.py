"""Stage ``kennen_io``: kennen-io on the R split (Table 2) and on the E splits named in ``kennen_io.splits`` (Table 3).

One task per split (and per extra metamodel seed of the R split, ``kennen_io.seeds``), run in
parallel on the executor (``KENNEN_EXECUTOR``), the R split's first. Writes the R split's metrics
(``acc.<attribute>``, ``acc.mean``, each with its 95% bootstrap interval over the test boxes
``_low``/``_high``; ``gap_vs_o.*``, kennen-io minus its warm start, i.e. kennen-o with kennen-io's seed,
on the same test boxes; ``queries.moved`` and ``query_phase<i>.*``, how far the queries moved and what
that did to the training loss; ``seeds.*`` with two or more seeds), every E split's mean with its
interval and its relative accuracy (``<split>.acc_mean``, ``<split>.relative``), the Table 3 rows, a
per-phase log (``phases.csv``), R confusion matrices, the R model (MLP weights and its queries,
``models/kennen_io.safetensors``), a PNG of sample queries before and after training, and DVCLive
loss curves (R split). Every split's training holds out ``calibration.val_fraction`` of its boxes (ours);
the R model is calibrated on them (``ece_before``/``ece_after``, abstention and out-of-zoo figures,
``reliability.csv``, ``risk_coverage.csv``, ``reliability.png``; ``kennen.metamodel.calibration``).

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
