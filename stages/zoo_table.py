"""Stage ``zoo_table``: merge the sample and every shard's outcomes -> ``data/zoo/models.csv``."""

from __future__ import annotations

import logging
from pathlib import Path

from kennen.errors import KennenError
from kennen.io import write_csv
from kennen.schemas import OUTCOMES
from kennen.zoo.store import TABLE_COLUMNS, read_sample, read_table, shard_tables
from stages._common import parser, run

log = logging.getLogger("kennen.zoo_table")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--sample", required=True, help="folder of per-shard sample tables (or one table)")
    p.add_argument("--shards", required=True, help="folder of shard files")
    p.add_argument("--out", required=True)

    def body(args) -> None:
        sample = read_sample(Path(args.sample))
        outcomes = {r["model_id"]: r for path in shard_tables(Path(args.shards)) for r in read_table(path, OUTCOMES)}
        missing = sorted({r["shard"] for r in sample if r["model_id"] not in outcomes})
        if missing:
            raise KennenError(
                f"train_zoo.shards: shards {missing} of the sample are not trained (list every shard "
                f"0..{max(r['shard'] for r in sample)} in train_zoo.shards)"
            )
        extra = set(outcomes) - {r["model_id"] for r in sample}
        if extra:
            raise KennenError(
                f"{args.shards}: holds models {sorted(extra)[:5]} that are not in {args.sample} (stale shards)"
            )
        rows = [s | outcomes[s["model_id"]] for s in sample]
        write_csv(args.out, rows, TABLE_COLUMNS)
        log.info("wrote %s: %d models", args.out, len(rows))

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
