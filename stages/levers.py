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
  from ``split``);
- the training boxes (``levers.boxes``): ``final`` models only (the paper's), or with ``checkpoints``: each
  training box's model also caught at ``train_zoo.checkpoints`` epochs, with its labels (``--checkpoints``);
  test boxes are always final models.

Every combination is trained in every fold of ``data/splits/folds.json``, the folds kennen-o, kennen-i,
kennen-io, the sweeps and the defences share, so every box is predicted once, out of fold, and every row is
paired with the reference row ``mlp.q<kennen_o.n_queries>.first.argmax`` (``mlp.q100.first.argmax``): the
paper's recipe as the ``kennen_o`` stage trains it (same boxes, features, seed and early stopping, so the same
predictions as its ``final_boxes`` row; its headline, with ``kennen_o.boxes: checkpoints``, is the row
``mlp.q100.first.checkpoints.argmax``).
Writes:

- ``--metrics``: per row ``<row>.acc_config.mean`` with ``_low``/``_high`` (each configuration counts
  once; 95% intervals resample configurations), ``<row>.acc.mean`` (every box counts once), ``<row>.gap.*``
  (``diff``, ``low``, ``high``, ``beyond_noise``: the row minus the reference over configurations, paired),
  ``<row>.valid`` (percent of boxes whose answers are a configuration of Table 1); ``reference``,
  ``n_boxes``, ``n_configs``, ``n_folds``;
- ``--table``: the same as CSV, a row per lever, for the results page. A row's name is
  ``<family>.q<n>.<queries>[.checkpoints].<answer>``.

With ``--transfer``, the levers of kennen-o's family and of the logistic regression are also trained once on
every zoo box (and its checkpoints) and scored on the ``transfer_boxes`` stage's foreign boxes that the
``transfer`` stage scores, asked the same query images (``--data``): ``foreign.<regime>.<row>.acc.mean`` over
the ten attributes the transfer stage scores, ``.gap.*`` paired with ``mlp.q<n>.first.argmax``
(``kennen.metamodel.levers.foreign_metrics``).
"""

from __future__ import annotations

from pathlib import Path

from kennen.config import base_seed, load_params, require, section
from kennen.io import write_csv, write_json
from kennen.metamodel.cv import units_of
from kennen.metamodel.kennen_o import KennenOParams, targets
from kennen.metamodel.levers import LeversParams, lever_rows, log_probabilities, on_foreign_boxes, query_sets
from kennen.queries import load_checkpoint_boxes, load_outputs, read_boxes
from kennen.splits import read_folds
from kennen.transfer.boxes import TransferParams
from kennen.zoo.ensembles import EnsembleParams
from stages._common import parser, run


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    for name in ("outputs", "boxes", "splits", "metrics", "table"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--checkpoints", help="the queries stage's checkpoint boxes (levers.boxes: checkpoints)")
    p.add_argument("--transfer", help="the transfer_boxes stage's folder: score the levers on its foreign boxes")
    p.add_argument("--data", help="MNIST .npz (the query images for the foreign boxes)")

    def body(a) -> None:
        params = load_params(a.params)
        lp, kp = section(LeversParams, params, "levers"), section(KennenOParams, params, "kennen_o")
        seed = base_seed(params)
        require(kp.n_queries in lp.n_queries, "levers.n_queries", f"must hold kennen_o.n_queries ({kp.n_queries})")
        boxes = read_boxes(Path(a.boxes))
        outputs, query_index = load_outputs(Path(a.outputs), boxes)
        folds = read_folds(Path(a.splits), boxes)
        y = targets(boxes).numpy()
        ckpt = load_checkpoint_boxes(Path(a.checkpoints), boxes, outputs.shape[1]) if a.checkpoints else None
        log_probs = log_probabilities(outputs, boxes, folds, query_sets(outputs, y, folds, lp), lp, kp, seed, ckpt)
        max_members = section(EnsembleParams, params, "ensembles").max_members
        rows, metrics = lever_rows(log_probs, y, units_of(boxes), kp.n_queries, max_members, seed)
        write_csv(a.table, rows, list(rows[0]))
        if a.transfer:  # the foreign boxes that the transfer stage scores
            ta = (Path(a.transfer), Path(a.data), query_index, outputs, boxes, ckpt, lp, kp, seed)
            metrics |= on_foreign_boxes(*ta, section(TransferParams, params, "transfer").min_acc)
        write_json(a.metrics, metrics | {"n_folds": len(folds)})

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
