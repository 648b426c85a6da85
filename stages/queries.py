"""Stage ``queries``: every kept model's and ensemble's outputs on the query images.

Writes ``boxes.csv`` (one row per black box, its 12 attributes) and
``outputs.npz`` (``outputs`` float32 [boxes, n_max, 10] log-probabilities, row
order = ``boxes.csv``; ``query_index`` = the queries' MNIST test-image indices).
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

import numpy as np

from kennen import data as mnist_data
from kennen.config import base_seed, load_params, section
from kennen.errors import KennenError
from kennen.io import write_csv
from kennen.log import progress
from kennen.parallel import run_tasks
from kennen.queries import (
    BOX_COLUMNS,
    QueryParams,
    box_table,
    draw_queries,
    ensemble_outputs,
    save_outputs,
    shard_task,
)
from kennen.schemas import ENSEMBLES, MODELS, check_zoo
from kennen.zoo.net import NetConfig
from kennen.zoo.prune import read_kept
from kennen.zoo.store import read_table, shard_name
from stages._common import parser, run

log = logging.getLogger("kennen.queries")

CHUNK = 20


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--models", required=True)
    p.add_argument("--kept", required=True)
    p.add_argument("--ensembles", required=True)
    p.add_argument("--shards", required=True)
    p.add_argument("--out-dir", required=True)

    def body(args) -> None:
        params = load_params(args.params)
        qp = section(QueryParams, params, "queries")
        start = time.perf_counter()
        mnist = mnist_data.load(Path(args.data))
        query_index = draw_queries(len(mnist.test_images), qp.n_max, base_seed(params))
        images = mnist_data.normalise(mnist.test_images[query_index])
        models, kept = read_table(Path(args.models), MODELS), read_kept(Path(args.kept))
        ensembles = read_table(Path(args.ensembles), ENSEMBLES)
        check_zoo(models, kept, ensembles, Path(args.models), Path(args.kept), Path(args.ensembles))
        if not kept:
            raise KennenError(
                f"prune.min_acc: no model passed pruning ({args.kept}), so there is no black box to query"
            )
        by_shard: dict[int, list[tuple[int, NetConfig]]] = {}
        by_id = {m["model_id"]: m for m in models}
        for i in kept:
            m = by_id[i]
            by_shard.setdefault(m["shard"], []).append((i, NetConfig.of(m)))
        # Tasks of at most CHUNK models, so that both workers stay busy to the end.
        tasks = [
            (str((Path(args.shards) / f"{shard_name(s)}.safetensors").resolve()), ms[i : i + CHUNK])
            for s, ms in sorted(by_shard.items())
            for i in range(0, len(ms), CHUNK)
        ]
        single: dict[int, np.ndarray] = {}
        for _, out in progress(
            run_tasks(functools.partial(shard_task, images=images), tasks, len(tasks)),
            len(tasks),
            "query outputs",
            log,
        ):
            single.update(out)
        boxes = box_table(models, kept, ensembles)
        members = [[int(m) for m in e["members"].split(";")] for e in ensembles]
        outputs = np.concatenate(
            [
                np.stack([single[i] for i in sorted(kept)]).astype(np.float32),
                ensemble_outputs(single, members, qp.n_max),
            ]
        )
        out_dir = Path(args.out_dir)
        save_outputs(out_dir / "outputs.npz", outputs, query_index)
        write_csv(out_dir / "boxes.csv", boxes, BOX_COLUMNS)
        log.info(
            "outputs of %d single models and %d ensembles on %d queries in %.1f s",
            len(kept),
            len(ensembles),
            qp.n_max,
            time.perf_counter() - start,
        )

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
