"""Stage ``kennen_o_sweep@<sweep>``: one Figure 4 / Table 3 analogue as plot data and PNG.

Rows carry the 95% bootstrap interval of their mean (``acc_mean_low``, ``acc_mean_high``).
The sweep point that is the ``kennen_o`` headline's own training is read from its
``--predictions`` instead of being trained again.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kennen.config import base_seed, load_params, section
from kennen.io import read_json
from kennen.metamodel.kennen_o import KennenOParams
from kennen.metamodel.report import plot_bars, plot_curve, write_table
from kennen.metamodel.runs import read_predictions
from kennen.metamodel.sweep import SWEEPS, SweepParams, run_sweep
from kennen.paper import KENNEN_O_BY_OUTPUT, TABLE3_KENNEN_IO
from kennen.queries import load_outputs, read_boxes
from kennen.splits import SplitParams, read_split
from stages._common import parser, run

log = logging.getLogger("kennen.kennen_o_sweep")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--sweep", required=True, choices=SWEEPS)
    for name in ("outputs", "boxes", "splits", "r-metrics", "predictions", "plots", "figures"):
        p.add_argument(f"--{name}", required=True)

    def body(args) -> None:
        params = load_params(args.params)
        kp = section(KennenOParams, params, "kennen_o")
        sp = section(SweepParams, params, "kennen_o_sweep")
        held = section(SplitParams, params, "splits").extrapolation
        outputs, _ = load_outputs(Path(args.outputs))
        boxes = read_boxes(Path(args.boxes))
        splits = {name: read_split(Path(args.splits), name, boxes) for name in ("r", *held)}
        r_metrics = read_json(args.r_metrics)
        headline = read_predictions(Path(args.predictions))
        rows = run_sweep(args.sweep, sp, kp, outputs, boxes, splits, held, base_seed(params), r_metrics, headline)
        write_table(Path(args.plots) / f"sweep_{args.sweep}.csv", rows)
        figure = Path(args.figures) / f"sweep_{args.sweep}.png"
        if args.sweep == "n_train":
            plot_curve(rows, "n_train", "training boxes", "kennen-o vs. number of training models", figure, log_x=True)
        elif args.sweep == "n_queries":
            plot_curve(rows, "n_queries", "queries", "kennen-o vs. number of queries", figure, log_x=True)
        elif args.sweep == "output":
            plot_bars(rows, "output", "acc_mean", "kennen-o mean accuracy by output type", figure, KENNEN_O_BY_OUTPUT)
        else:
            plot_bars(
                rows,
                "split",
                "relative",
                "kennen-o on E splits, relative to R (R = 100, chance = 0)",
                figure,
                TABLE3_KENNEN_IO,
            )
        for row in rows:
            log.info("%s", row)

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
