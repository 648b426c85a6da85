"""Stage ``queries``: every kept model's and ensemble's outputs on the query images.

Writes ``boxes.csv`` (one row per black box, its 12 attributes) and
``outputs.npz`` (``outputs`` float32 [boxes, n_max, 10] log-probabilities, row
order = ``boxes.csv``; ``query_index`` = the queries' MNIST test-image indices)
and, with ``--checkpoints``, ``checkpoints.npz``: the kept models' outputs at
their training checkpoints, extra training boxes (``kennen.queries.CheckpointBoxes``).
The logic is ``kennen.run_queries.run``.
"""

from __future__ import annotations

from pathlib import Path

from kennen import run_queries
from kennen.config import load_params
from stages._common import parser, run


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    for name in ("data", "models", "kept", "ensembles", "shards", "out-dir"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--checkpoints", help="the train_zoo stage's checkpoint outputs (folder): checkpoints.npz")

    def body(a) -> None:
        paths = (Path(a.data), Path(a.models), Path(a.kept), Path(a.ensembles), Path(a.shards), Path(a.out_dir))
        run_queries.run(load_params(a.params), *paths, Path(a.checkpoints) if a.checkpoints else None)

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
