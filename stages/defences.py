"""Stage ``defences``: what defended outputs, and the weights, give away (``kennen.metamodel.ladder``).

Every ``defences.settings`` entry is applied to the stored outputs of every box; per setting the
metrics give its utility (top-1 agreement, accuracy change, KL) and kennen-o's accuracy for a
non-adaptive and an adaptive attacker, with 95% bootstrap intervals over the R split's test boxes.
The ``whitebox`` row is the weight-statistics metamodel (``kennen.metamodel.weights``); the
``label_kennen_i`` row is the ``kennen_i`` stage's result (its crafted queries are answered with
labels, so the label-only defence changes nothing it reads). Writes the
metrics, ``privacy_utility.csv`` and ``attributes.csv`` plot data, and ``privacy_utility.png``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kennen import data as mnist_data
from kennen.config import base_seed, load_params, section
from kennen.io import read_json, write_json
from kennen.metamodel import ladder
from kennen.metamodel.kennen_o import KennenOParams
from kennen.metamodel.report import plot_privacy_utility, write_table
from kennen.metamodel.runs import scored
from kennen.metamodel.weights import whitebox, zoo_features
from kennen.queries import load_outputs, read_boxes
from kennen.splits import read_split
from stages._common import parser, run

log = logging.getLogger("kennen.defences")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    for name in ("data", "outputs", "boxes", "splits", "models", "shards", "kennen-i", "metrics", "plots", "figures"):
        p.add_argument(f"--{name}", required=True)

    def body(args) -> None:
        params = load_params(args.params)
        dp, kp = section(ladder.DefencesParams, params, "defences"), section(KennenOParams, params, "kennen_o")
        seed = base_seed(params)
        outputs, query_index = load_outputs(Path(args.outputs))
        boxes, split = read_boxes(Path(args.boxes)), read_split(Path(args.splits), "r")
        labels = mnist_data.load(Path(args.data)).test_labels[query_index]
        y_true, settings = ladder.evaluate(dp.defences(), kp, outputs, boxes, split, labels, seed)
        wx = zoo_features(boxes, Path(args.models), Path(args.shards))
        wb = scored(*whitebox(wx, boxes, split, seed, dp.whitebox_iter))
        n = (len(split["train"]), len(split["test"]), kp.n_queries, outputs.shape[1])
        crafted = ladder.crafted_row(read_json(Path(args.kennen_i)), len(split["test"]))
        write_json(args.metrics, ladder.metrics(settings, wb, crafted, *n))
        rows = ladder.curve_rows(settings)
        write_table(Path(args.plots) / "privacy_utility.csv", rows)
        write_table(Path(args.plots) / "attributes.csv", ladder.attribute_rows(settings, wb, crafted))
        plot_privacy_utility(rows, Path(args.figures) / "privacy_utility.png", wb["acc.mean"], ladder.chance())
        log.info("white box: %.1f [%.1f, %.1f]", wb["acc.mean"], wb["acc.mean_low"], wb["acc.mean_high"])
        for r in rows:
            log.info("%-22s agreement %6.2f  non-adaptive %5.1f  adaptive %5.1f", r["setting"], r["agreement"],
                     r["nonadaptive"], r["adaptive"])  # fmt: skip

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
