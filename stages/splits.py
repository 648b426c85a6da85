"""Stage ``splits``: the R split and the extrapolation splits as box-id files (``<name>.json``), and the
cross-validation folds over configurations (``folds.json``: ``{"folds": [[box ids], ...]}``)."""

from __future__ import annotations

import logging
from pathlib import Path

from kennen.config import base_seed, load_params, section
from kennen.io import check_writable, write_json
from kennen.queries import read_boxes
from kennen.splits import SplitParams, all_splits, config_folds
from stages._common import parser, run

log = logging.getLogger("kennen.splits")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--boxes", required=True)
    p.add_argument("--out-dir", required=True)

    def body(args) -> None:
        check_writable(Path(args.out_dir), folder=True)
        params = load_params(args.params)
        sp = section(SplitParams, params, "splits")
        boxes = read_boxes(Path(args.boxes))
        splits = all_splits(boxes, sp, base_seed(params))
        for name, split in splits.items():
            write_json(Path(args.out_dir) / f"{name}.json", split)
            log.info("split %s: %d train, %d test boxes", name, len(split["train"]), len(split["test"]))
        folds = config_folds(boxes, sp.folds, base_seed(params))
        write_json(Path(args.out_dir) / "folds.json", {"folds": folds})
        n_configs = len({b["config"] for b in boxes})
        log.info("folds: %d of %s boxes, %d configurations", len(folds), [len(f) for f in folds], n_configs)

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
