"""Stage ``prune``: keep models with test accuracy >= ``prune.min_acc`` -> ``data/zoo/kept.json``."""

from __future__ import annotations

import logging
from pathlib import Path

from kennen.config import load_params, section
from kennen.io import write_json
from kennen.schemas import MODELS
from kennen.zoo.prune import PruneParams, kept_ids
from kennen.zoo.store import read_table
from stages._common import parser, run

log = logging.getLogger("kennen.prune")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--models", required=True)
    p.add_argument("--out", required=True)

    def body(args) -> None:
        pp = section(PruneParams, load_params(args.params), "prune")
        models = read_table(Path(args.models), MODELS)
        kept = kept_ids(models, pp.min_acc)
        write_json(args.out, {"min_acc": pp.min_acc, "n_models": len(models), "model_ids": kept})
        log.info("kept %d of %d models (test accuracy >= %g%%)", len(kept), len(models), pp.min_acc)

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
