"""Stage ``choices@<method>``: score the candidate settings the method's defaults were chosen from.

Each candidate (kennen-o's optimisers, kennen-i's query steps, kennen-io's schedules and steps) is
trained on an 80/20 by-configuration carve of the R split's *training* boxes and scored on the
other 20%; the R test boxes are never read. Writes {method, n_train, n_validation, rows}, one
row per candidate {setting, validation_mean, [mean_pixel_change,] seconds, is_default}, as JSON
and CSV. README "Choosing kennen-o's optimiser" and "Choosing kennen-i's and kennen-io's steps"
quote these tables.

The logic is ``kennen.metamodel.choices.run``.
"""

from __future__ import annotations

from pathlib import Path

from kennen.config import load_params
from kennen.metamodel import choices
from stages._common import parser, run


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("method", choices=choices.METHODS)
    for name in ("outputs", "boxes", "splits", "data", "models", "shards", "metrics", "plots"):
        p.add_argument(f"--{name}", required=True)

    def body(a) -> None:
        paths = [Path(getattr(a, n)) for n in ("outputs", "boxes", "splits", "data", "models", "shards", "metrics")]
        choices.run(a.method, load_params(a.params), *paths, Path(a.plots))

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
