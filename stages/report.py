"""Stage ``report``: the results page ``reports/README.md``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kennen.config import load_params, section
from kennen.imagenet.families import ProbeParams
from kennen.io import read_json, write_text
from kennen.metamodel.kennen_i import KennenIParams
from kennen.metamodel.kennen_io import KennenIOParams
from kennen.metamodel.kennen_o import KennenOParams
from kennen.results_page import read_plots, render
from kennen.transfer.boxes import TransferParams
from kennen.zoo.prune import PruneParams
from kennen.zoo.train import TrainParams
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
}


def parsed_params(raw: dict) -> dict:
    """The sections the page quotes, parsed and validated, with every default filled in (as plain dicts)."""
    sections = {
        "train_zoo": TrainParams,
        "prune": PruneParams,
        "kennen_o": KennenOParams,
        "kennen_i": KennenIParams,
        "kennen_io": KennenIOParams,
        "imagenet_probe": ProbeParams,
        "transfer": TransferParams,
    }
    return {name: dataclasses.asdict(section(cls, raw, name)) for name, cls in sections.items()}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    for name in (*METRICS.values(), "plots", "out"):
        p.add_argument(f"--{name.replace('_', '-')}", required=True)

    def body(args) -> None:
        metrics = {arg: read_json(getattr(args, name)) for arg, name in METRICS.items()}
        params = parsed_params(load_params(args.params))
        write_text(args.out, render(**metrics, params=params, **read_plots(Path(args.plots))))

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
