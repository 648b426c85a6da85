"""Stage ``kennen_o``: train kennen-o on the R split with every optimiser setting; report the headline one.

The headline setting is trained with ``kennen_o.seeds`` seeds and ``kennen_o.early_stop``,
the other settings with the first seed and their fixed schedule; all trainings run in
parallel (``kennen.metamodel.runs``). Writes:

- metrics: ``acc.<attribute>``, ``acc.mean`` of the headline (first seed) with 95%
  bootstrap intervals over the test boxes (``acc.<attribute>_low``/``_high``,
  ``acc.mean_low``/``_high``); the spread over seeds (``seeds.acc.mean`` with its
  t-interval ``seeds.acc.mean_low``/``_high`` and ``seeds.acc.mean_sd``, per attribute
  ``seeds.acc.<attribute>`` and ``seeds.acc.<attribute>_sd``, ``seeds.n``);
  ``<setting>.acc.mean`` for every setting; box counts and epochs trained;
- ``predictions.csv``: the headline's test-box predictions (``runs.write_predictions``
  documents the format), for paired comparisons in later stages;
- calibration of the headline (``kennen.metamodel.calibration``), fitted on its
  early-stopping carve: ``ece_before``/``ece_after`` (with intervals), abstention and
  out-of-zoo figures in the metrics, ``reliability.csv`` and ``risk_coverage.csv`` in the
  plots, ``reliability.png``; the temperatures and the training boxes' features go
  into the metamodel for ``kennen whiten``;
- a per-setting table, per-attribute confusion matrices, the trained metamodel
  (safetensors + JSON) and DVCLive training curves of the headline.

With ``kennen_o.boxes: checkpoints`` (ours) every training also learns from the ``--checkpoints`` boxes of its
training boxes' models, never tested on; the methods table then has the paper's recipe (final boxes only,
headline setting, first seed) as a row, and ``cv.vs_final_boxes.*`` is the paired difference to it.

``--headline`` repeats the cross-validated means over configurations and over boxes, their intervals and
``cv.n_boxes``/``cv.n_configs`` (``runner.HEADLINE``), listed first in dvc.yaml so that ``dvc metrics diff``
leads with them.

The logic is ``kennen.metamodel.run_kennen_o.run``, written out by ``kennen.metamodel.runner``.
"""

from __future__ import annotations

from pathlib import Path

from kennen.config import load_params
from kennen.metamodel import run_kennen_o
from kennen.metamodel.runner import OUTPUTS, Outputs
from stages._common import parser, run


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    for name in ("data", "outputs", "boxes", "splits", *OUTPUTS):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--checkpoints", help="the queries stage's checkpoint boxes (read with kennen_o.boxes: checkpoints)")

    def body(a) -> None:
        inputs = (Path(a.data), Path(a.outputs), Path(a.boxes), Path(a.splits))
        ckpt = Path(a.checkpoints) if a.checkpoints else None
        run_kennen_o.run(load_params(a.params), *inputs, Outputs.of(a), ckpt)

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
