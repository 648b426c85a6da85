"""Stage ``ensembles``: same-configuration subsets of kept models -> ``data/zoo/ensembles.csv``."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from kennen.config import load_params, section
from kennen.io import write_csv
from kennen.schemas import ENSEMBLE_COLUMNS, MODELS, require_known
from kennen.zoo.ensembles import EnsembleParams, build_ensembles
from kennen.zoo.prune import read_kept
from kennen.zoo.store import read_table
from stages._common import parser, run

log = logging.getLogger("kennen.ensembles")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--models", required=True)
    p.add_argument("--kept", required=True)
    p.add_argument("--out", required=True)

    def body(args) -> None:
        ep = section(EnsembleParams, load_params(args.params), "ensembles")
        models, kept = read_table(Path(args.models), MODELS), read_kept(Path(args.kept))
        require_known(kept, (m["model_id"] for m in models), Path(args.kept), "model", Path(args.models))
        rows = build_ensembles(models, kept, ep.max_members, ep.max_boxes_per_config)
        write_csv(args.out, rows, ENSEMBLE_COLUMNS)
        log.info("wrote %s: %d ensembles, sizes %s", args.out, len(rows), dict(Counter(r["n_members"] for r in rows)))

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
