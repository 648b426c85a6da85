"""Stage ``levers``: what each way of using the zoo's boxes better adds to kennen-o, in the folds (ours).

A lever is one choice beside the paper's recipe (an MLP reading the first 100 of the stored random
queries, one argmax per attribute head):

- the metamodel family (``levers.families``): ``mlp``, kennen-o's MLP as the ``kennen_o`` stage trains it
  (``kennen_o.hidden`` units, its optimiser and early stopping); ``mlp_small``, the same with
  ``levers.small_hidden`` units (MNTD's meta-classifier has 20); ``logreg``, ``pca_logreg`` (on the first
  ``levers.pca_dim`` principal components), ``centroid`` and ``knn`` (``levers.knn_k`` neighbours), from
  ``kennen.metamodel.baselines``;
- the queries, ``levers.n_queries`` of them: ``first``, the first n of the random draw (the paper's), or
  ``greedy``, chosen on the training fold's boxes only (``kennen.metamodel.select``, ``levers.ridge``);
- the answer: ``argmax`` per head (the paper's), or ``valid``, the most probable configuration of Table 1
  (``kennen.metamodel.decode``; ``n_par`` follows from the architecture and the ensemble's size, ``size``
  from ``split``).

Every combination is trained in every fold of ``data/splits/folds.json``, the folds kennen-o, kennen-i,
kennen-io, the sweeps and the defences share, so every box is predicted once, out of fold, and every row is
paired with the reference row ``mlp.q<kennen_o.n_queries>.first.argmax`` (``mlp.q100.first.argmax``): kennen-o
as the ``kennen_o`` stage trains it (same boxes, features, seed and early stopping, so the same predictions as
its ``cv_predictions.csv``).
Writes:

- ``--metrics``: per row ``<row>.acc_config.mean`` with ``_low``/``_high`` (each configuration counts
  once; 95% intervals resample configurations), ``<row>.acc.mean`` (every box counts once), ``<row>.gap.*``
  (``diff``, ``low``, ``high``, ``beyond_noise``: the row minus the reference over configurations, paired),
  ``<row>.valid`` (percent of boxes whose answers are a configuration of Table 1); ``reference``,
  ``n_boxes``, ``n_configs``, ``n_folds``;
- ``--table``: the same as CSV, a row per lever, for the results page.

The transfer stage's foreign boxes are not scored here: their outputs on the 1,000 candidate queries are
not stored, and greedy queries need them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kennen.config import base_seed, load_params, require, section
from kennen.io import write_csv, write_json
from kennen.metamodel.cv import units_of
from kennen.metamodel.kennen_o import KennenOParams, targets
from kennen.metamodel.levers import LeversParams, lever_rows, log_probabilities, query_sets
from kennen.queries import load_outputs, read_boxes
from kennen.splits import read_folds
from kennen.zoo.ensembles import EnsembleParams
from stages._common import parser, run

log = logging.getLogger("kennen.levers")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    for name in ("outputs", "boxes", "splits", "metrics", "table"):
        p.add_argument(f"--{name}", required=True)

    def body(a) -> None:
        params = load_params(a.params)
        lp = section(LeversParams, params, "levers")
        kp = section(KennenOParams, params, "kennen_o")
        seed = base_seed(params)
        hint = f"must hold kennen_o.n_queries ({kp.n_queries}), the reference row's budget"
        require(kp.n_queries in lp.n_queries, "levers.n_queries", hint)
        reference = f"mlp.q{kp.n_queries}.first.argmax"
        boxes = read_boxes(Path(a.boxes))
        outputs, _ = load_outputs(Path(a.outputs), boxes)
        folds = read_folds(Path(a.splits), boxes)
        y = targets(boxes).numpy()
        log_probs = log_probabilities(outputs, boxes, folds, query_sets(outputs, y, folds, lp), lp, kp, seed)
        max_members = section(EnsembleParams, params, "ensembles").max_members
        rows, metrics = lever_rows(log_probs, y, units_of(boxes), reference, max_members, seed)
        rows.sort(key=lambda r: -r["mean"])
        for r in rows[:5]:
            log.info("%s: %.1f [%.1f, %.1f]", r["lever"], r["mean"], r["mean_low"], r["mean_high"])
        write_csv(a.table, rows, list(rows[0]))
        write_json(a.metrics, metrics | {"n_folds": len(folds)})

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
