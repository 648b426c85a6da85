"""Stage ``zoo_report``: ``reports/metrics/zoo.json`` plus accuracy and composition plots."""

from __future__ import annotations

import logging
from pathlib import Path

from kennen.config import load_params, section
from kennen.io import write_json
from kennen.schemas import ENSEMBLES, MODELS, check_zoo
from kennen.zoo.prune import PruneParams, read_kept
from kennen.zoo.report import write_plots, zoo_metrics
from kennen.zoo.store import read_table
from stages._common import parser, run

log = logging.getLogger("kennen.zoo_report")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--models", required=True)
    p.add_argument("--kept", required=True)
    p.add_argument("--ensembles", required=True)
    p.add_argument("--metrics", required=True, help="metrics JSON")
    p.add_argument("--plots", required=True, help="folder of plot data (CSV)")
    p.add_argument("--figures", required=True, help="folder of PNG figures")

    def body(args) -> None:
        pp = section(PruneParams, load_params(args.params), "prune")
        models, kept = read_table(Path(args.models), MODELS), read_kept(Path(args.kept))
        ensembles = read_table(Path(args.ensembles), ENSEMBLES)
        check_zoo(models, kept, ensembles, Path(args.models), Path(args.kept), Path(args.ensembles))
        metrics = zoo_metrics(models, kept, ensembles)
        write_json(args.metrics, metrics)
        write_plots(models, kept, ensembles, pp.min_acc, Path(args.plots), Path(args.figures))
        log.info("zoo: %s", metrics)

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
