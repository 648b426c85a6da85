"""Stage ``splits``: the R split and the extrapolation splits as box-id files (``<name>.json``)."""

from __future__ import annotations

import logging
from pathlib import Path

from kennen.config import base_seed, load_params, section
from kennen.io import write_json
from kennen.queries import read_boxes
from kennen.splits import SplitParams, all_splits
from stages._common import parser, run

log = logging.getLogger("kennen.splits")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--boxes", required=True)
    p.add_argument("--out-dir", required=True)

    def body(args) -> None:
        params = load_params(args.params)
        sp = section(SplitParams, params, "splits")
        splits = all_splits(read_boxes(Path(args.boxes)), sp, base_seed(params))
        for name, split in splits.items():
            write_json(Path(args.out_dir) / f"{name}.json", split)
            log.info("split %s: %d train, %d test boxes", name, len(split["train"]), len(split["test"]))

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
