"""Stage ``kennen_o_sweep@<sweep>``: one Figure 4 / Table 3 analogue as plot data and PNG.

The first three sweeps run in the cross-validation folds; rows carry the mean over boxes and over
configurations with 95% intervals over resampled configurations. The sweep point that is the
``kennen_o`` headline's own training is read from its out-of-fold ``--predictions`` instead of
being trained again (``kennen.metamodel.sweep``). ``--metrics``: the learning curve's fit
(``n_train``; ``{}`` for the other sweeps). ``--checkpoints``: the ``queries`` stage's checkpoint boxes, for
the learning curve with checkpoint boxes (``kennen_o_sweep.curves``; its columns ``checkpoints_*``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from kennen.config import load_params
from kennen.metamodel.sweep import SWEEPS, run_stage
from stages._common import parser, run

log = logging.getLogger("kennen.kennen_o_sweep")
FILES = ("outputs", "boxes", "splits", "r-metrics", "predictions", "plots", "figures", "metrics")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--sweep", required=True, choices=SWEEPS)
    for name in FILES:
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--checkpoints", help="the queries stage's checkpoint boxes (kennen_o_sweep.curves: checkpoints)")

    def body(args) -> None:
        paths = [Path(getattr(args, name.replace("-", "_"))) for name in FILES]
        ckpt = Path(args.checkpoints) if args.checkpoints else None
        for row in run_stage(args.sweep, load_params(args.params), *paths, ckpt):
            log.info("%s", row)

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
