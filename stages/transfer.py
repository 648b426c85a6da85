"""Stage ``transfer``: whiten the foreign boxes of ``transfer_boxes`` with every metamodel and score them.

Each box goes through ``kennen whiten``'s own path (``load_target`` then ``whiten``).
Writes the scores per regime and method (``--metrics``, keys in ``kennen.transfer.score``)
and every prediction (``<plots>/predictions.csv``).
"""

from __future__ import annotations

from pathlib import Path

from kennen.config import load_params, section
from kennen.io import write_csv, write_json
from kennen.transfer.boxes import TransferParams, read_boxes
from kennen.transfer.score import PREDICTION_COLUMNS, score_boxes
from stages._common import parser, run


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    for name in ("boxes", "models", "kennen-o", "kennen-io", "kennen-i", "metrics", "plots"):
        p.add_argument(f"--{name}", required=True)

    def body(args) -> None:
        tp = section(TransferParams, load_params(args.params), "transfer")
        box_dir = Path(args.boxes)
        in_zoo = {"kennen-o": Path(args.kennen_o), "kennen-io": Path(args.kennen_io), "kennen-i": Path(args.kennen_i)}
        metrics, predictions = score_boxes(
            read_boxes(box_dir / "boxes.csv"), box_dir, Path(args.models), tp.methods, in_zoo, tp.seed, tp.min_acc
        )
        write_json(args.metrics, metrics)
        write_csv(Path(args.plots) / "predictions.csv", predictions, PREDICTION_COLUMNS)

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
