"""Stage ``imagenet_attack``: family-aware adversarial examples (paper §7, Tables 4 and 5).

The targets are one model per architecture of ``imagenet_probe.families``: offline, the
family zoo's seed-0 surrogates (``data/imagenet/weights``), attacked on MNIST test digits
outside the probe's query pool; pretrained, torchvision's ImageNet classifiers on the
labelled images of ``imagenet_attack.labels``. Adversarial images (L∞ PGD,
:mod:`kennen.imagenet.attack`) are made once per distinct generating set, as parallel
tasks, and tested on every target that set serves. The family each target is
*predicted* to have comes from the family probe, trained on the zoo's outputs without
the target's architecture. Writes ``reports/metrics/attack.json``, the two tables as
DVC plot data and a heatmap PNG. The logic is ``kennen.imagenet.run_attack.run``.
"""

from __future__ import annotations

from pathlib import Path

from kennen.config import load_params
from kennen.imagenet import run_attack
from stages._common import parser, run

ARGS = ("data", "zoo", "metrics", "plots", "figures")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    for name in ARGS:
        p.add_argument(f"--{name}", required=True)
    return run(lambda a: run_attack.run(load_params(a.params), *(Path(getattr(a, n)) for n in ARGS)), p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
