"""Stage ``report``: the results page ``reports/README.md``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kennen.config import load_params, section
from kennen.imagenet.families import ProbeParams
from kennen.io import read_csv, read_json, write_text
from kennen.metamodel.kennen_i import KennenIParams
from kennen.metamodel.kennen_io import KennenIOParams
from kennen.metamodel.kennen_o import KennenOParams
from kennen.results_page import render
from kennen.transfer.boxes import TransferParams
from kennen.zoo.prune import PruneParams
from kennen.zoo.train import TrainParams
from stages._common import parser, run


def _typed(rows: list[dict[str, str]]) -> list[dict]:
    def conv(v: str):
        try:
            f = float(v)
        except ValueError:
            return v
        return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f

    return [{k: conv(v) for k, v in r.items()} for r in rows]


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
    names = (
        "zoo",
        "kennen-o",
        "kennen-i",
        "kennen-io",
        "imagenet-probe",
        "attack",
        "transfer",
        "defences",
        "plots",
        "out",
    )
    for name in names:
        p.add_argument(f"--{name}", required=True)

    def body(args) -> None:
        plots = Path(args.plots)
        sweeps = {
            s: _typed(read_csv(plots / "kennen_o" / f"sweep_{s}.csv"))
            for s in ("n_train", "n_queries", "output", "extrapolation")
        }
        io_ext = plots / "kennen_io" / "extrapolation.csv"
        page = render(
            read_json(args.zoo),
            read_json(args.kennen_o),
            _typed(read_csv(plots / "kennen_o" / "optimisers.csv")),
            sweeps,
            parsed_params(load_params(args.params)),
            read_json(args.kennen_i),
            _typed(read_csv(plots / "kennen_i" / "targets.csv")),
            read_json(args.kennen_io),
            _typed(read_csv(io_ext)) if io_ext.is_file() else [],
            read_json(args.imagenet_probe),
            _typed(read_csv(plots / "imagenet_probe" / "accuracy.csv")),
            read_json(args.attack),
            read_json(args.transfer),
            read_json(args.defences),
        )
        write_text(args.out, page)

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
