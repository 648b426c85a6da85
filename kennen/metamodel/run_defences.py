"""The ``defences`` stage: what defended outputs, and the weights, give away (``kennen.metamodel.ladder``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kennen import data as mnist_data
from kennen.config import base_seed, section
from kennen.io import write_json
from kennen.metamodel import ladder
from kennen.metamodel.cv import out_of_fold, units_of
from kennen.metamodel.kennen_o import KennenOParams
from kennen.metamodel.report import plot_privacy_utility, write_table
from kennen.metamodel.weights import whitebox, zoo_features
from kennen.queries import load_outputs, read_boxes
from kennen.schemas import MODELS, box_members, check_shards, read_metrics, read_table
from kennen.splits import fold_split, read_folds

log = logging.getLogger("kennen.defences")


def run(
    params: dict[str, Any], data: Path, outputs_npz: Path, boxes_csv: Path, splits: Path, models: Path, shards: Path,
    kennen_i: Path, metrics: Path, plots: Path, figures: Path,
) -> None:  # fmt: skip
    """Every defence setting against kennen-o (both attackers), the white box and kennen-i; write the ladder.

    Args:
        params: the params tree (sections ``defences``, ``kennen_o`` and the seed).
        data, outputs_npz, boxes_csv, splits, models, shards: MNIST, the stored outputs and the zoo.
        kennen_i: the ``kennen_i`` stage's metrics (its row of the ladder).
        metrics, plots, figures: where to write.
    """
    dp, kp = section(ladder.DefencesParams, params, "defences"), section(KennenOParams, params, "kennen_o")
    seed = base_seed(params)
    boxes = read_boxes(boxes_csv)
    outputs, query_index = load_outputs(outputs_npz, boxes)
    folds = read_folds(splits, boxes)
    check_shards(shards, read_table(models, MODELS), box_members(boxes), models)
    labels = mnist_data.load(data).test_labels[query_index]
    y_true, settings = ladder.evaluate(dp.defences(), kp, outputs, boxes, folds, labels, seed)
    wx = zoo_features(boxes, models, shards)
    per_fold = [whitebox(wx, boxes, fold_split(folds, f), seed, dp.whitebox_iter)[1] for f in range(len(folds))]
    units = units_of(boxes)
    wb = ladder.score(y_true, out_of_fold(folds, per_fold, len(boxes)), units, seed)
    n = (len(boxes), len(set(units)), len(folds), kp.n_queries, outputs.shape[1])
    crafted = ladder.crafted_row(read_metrics(kennen_i, "kennen_i"), len(boxes))
    write_json(metrics, ladder.metrics(settings, wb, crafted, *n))
    rows = ladder.curve_rows(settings)
    write_table(plots / "privacy_utility.csv", rows)
    write_table(plots / "attributes.csv", ladder.attribute_rows(settings, wb, crafted))
    plot_privacy_utility(rows, figures / "privacy_utility.png", wb["acc.mean"], ladder.chance())
    log.info("white box: %.1f [%.1f, %.1f]", wb["acc.mean"], wb["acc.mean_low"], wb["acc.mean_high"])
    for r in rows:
        log.info("%-22s agreement %6.2f  non-adaptive %5.1f  adaptive %5.1f", r["setting"], r["agreement"],
                 r["nonadaptive"], r["adaptive"])  # fmt: skip
