"""Stage ``kennen_o_sweep@<sweep>``: one Figure 4 / Table 3 analogue as plot data and PNG.

Rows carry the 95% bootstrap interval of their mean (``acc_mean_low``, ``acc_mean_high``).
The sweep point that is the ``kennen_o`` headline's own training is read from its
``--predictions`` instead of being trained again (``kennen.metamodel.sweep``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from kennen.config import load_params
from kennen.metamodel.sweep import SWEEPS, run_stage
from stages._common import parser, run

log = logging.getLogger("kennen.kennen_o_sweep")
FILES = ("outputs", "boxes", "splits", "r-metrics", "predictions", "plots", "figures")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--sweep", required=True, choices=SWEEPS)
    for name in FILES:
        p.add_argument(f"--{name}", required=True)

    def body(args) -> None:
        paths = [Path(getattr(args, name.replace("-", "_"))) for name in FILES]
        for row in run_stage(args.sweep, load_params(args.params), *paths):
            log.info("%s", row)

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
