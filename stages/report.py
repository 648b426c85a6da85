"""Stage ``report``: the results page ``reports/README.md``."""

from __future__ import annotations

from pathlib import Path

from kennen.config import load_params
from kennen.io import write_text
from kennen.results_page import page_params, read_plots, render
from kennen.schemas import read_metrics
from stages._common import parser, run

# render's argument: this stage's option (its metrics JSON, written by the stage of that name).
METRICS = {
    "zoo": "zoo",
    "kennen_o": "kennen_o",
    "kennen_i": "kennen_i",
    "kennen_io": "kennen_io",
    "probe": "imagenet_probe",
    "attack": "attack",
    "transfer": "transfer",
    "defences": "defences",
    "levers": "levers",
}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    for name in (*METRICS.values(), "plots", "out"):
        p.add_argument(f"--{name.replace('_', '-')}", required=True)
    p.add_argument("--learning-curve", required=True, help="the kennen_o_sweep@n_train stage's fit (metrics JSON)")

    def body(args) -> None:
        metrics = {arg: read_metrics(Path(getattr(args, name)), name) for arg, name in METRICS.items()}
        metrics["learning_curve"] = read_metrics(Path(args.learning_curve), "learning_curve")
        params = page_params(load_params(args.params))
        write_text(args.out, render(**metrics, params=params, **read_plots(Path(args.plots))))

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
