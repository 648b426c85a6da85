"""Stage ``sample_zoo``: draw the zoo's configurations -> ``data/zoo/sample/shard-N.csv``, one table per shard."""

from __future__ import annotations

import logging
from pathlib import Path

from kennen.config import base_seed, load_params, section
from kennen.zoo.sample import SampleParams, sample_zoo
from kennen.zoo.store import write_sample
from stages._common import parser, run

log = logging.getLogger("kennen.sample_zoo")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--out-dir", required=True, help="folder of the per-shard sample tables")

    def body(args) -> None:
        params = load_params(args.params)
        sp = section(SampleParams, params, "sample_zoo")
        rows = sample_zoo(sp, base_seed(params))
        write_sample(Path(args.out_dir), rows)
        log.info(
            "wrote %s: %d models in %d shards, %d distinct configurations",
            args.out_dir,
            len(rows),
            sp.n_shards,
            len({r["config"] for r in rows}),
        )

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
