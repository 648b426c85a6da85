"""Choose kennen-o's optimiser on a validation carve of the R split's *training* boxes.

The R test boxes are never looked at. Usage, after `dvc repro splits`:

    python scripts/kennen_o_validation.py [--params params.yaml]

Prints the mean class-balanced validation accuracy of each candidate setting.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from kennen.config import base_seed, load_params, section
from kennen.metamodel.kennen_o import KennenOParams, Optimiser, train_and_evaluate
from kennen.queries import load_outputs, read_boxes
from kennen.splits import SplitParams, random_split

CANDIDATES = {
    "official (SGD 1e-4, wd 1e-2)": Optimiser("sgd", 1e-4, weight_decay=0.01),
    "Adam 1e-4": Optimiser("adam", 1e-4),
    "Adam 3e-4, 100 epochs": Optimiser("adam", 3e-4, epochs=100),
    "Adam 1e-3": Optimiser("adam", 1e-3),
    "Adam 1e-3, wd 1e-3": Optimiser("adam", 1e-3, weight_decay=1e-3),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    args = p.parse_args()
    params = load_params(args.params)
    kp = section(KennenOParams, params, "kennen_o")
    outputs, _ = load_outputs(Path("data/queries/outputs.npz"))
    boxes = read_boxes(Path("data/queries/boxes.csv"))
    train = set(json.loads(Path("data/splits/r.json").read_text())["train"])
    # A by-configuration 80/20 carve of the training boxes, with its own seed.
    val = random_split([b for b in boxes if b["box"] in train], SplitParams(test_fraction=0.2), seed=99)
    print(f"{len(val['train'])} training / {len(val['test'])} validation boxes, {kp.n_queries} queries, {kp.output}")
    for name, opt in CANDIDATES.items():
        start = time.perf_counter()
        result = train_and_evaluate(outputs, boxes, val, kp.n_queries, kp.output, kp.hidden, opt, base_seed(params))
        print(f"{name:32s} validation mean {result.metrics['acc.mean']:5.1f}%   ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
