"""Stage ``transfer_boxes``: train black boxes with a trainer the zoo never saw (``kennen.transfer.foreign``).

Writes ``<out-dir>/<regime>/box-<i>.pt2`` (``torch.export`` programs) and their table
``<out-dir>/boxes.csv`` (true attributes, test accuracy). Apart from ``transfer`` so
that retraining a metamodel never retrains the boxes.
"""

from __future__ import annotations

from pathlib import Path

from kennen.config import load_params, section
from kennen.transfer.boxes import TransferParams, make_boxes
from stages._common import parser, run


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--out-dir", required=True)

    def body(args) -> None:
        make_boxes(section(TransferParams, load_params(args.params), "transfer"), Path(args.data), Path(args.out_dir))

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
