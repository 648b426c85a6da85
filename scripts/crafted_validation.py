"""Choose kennen-i's and kennen-io's query step size and schedule on a validation carve of the R *training* boxes.

The R test boxes are never looked at. Usage, after `dvc repro splits`:

    python scripts/crafted_validation.py kennen_i  [--params params.yaml] [--epochs 30]
    python scripts/crafted_validation.py kennen_io [--params params.yaml]

Prints the mean class-balanced validation accuracy of each candidate. Each candidate
is a full training run on one core (minutes each; kennen-io's are the longest).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from kennen import data as mnist_data
from kennen.attributes import ATTRIBUTES
from kennen.config import base_seed, load_params, section
from kennen.metamodel.crafted import ZooSource, draw_images
from kennen.metamodel.kennen_i import KennenIParams, run_target
from kennen.metamodel.kennen_io import KennenIOParams, Phase, run_split
from kennen.metamodel.kennen_o import KennenOParams, accuracies
from kennen.queries import load_outputs, read_boxes
from kennen.seeds import Purpose, derive
from kennen.splits import SplitParams, random_split


def schedule(text: str) -> tuple[Phase, ...]:
    """'m200,q4,m50' -> phases."""
    names = {"m": "metamodel", "q": "queries"}
    return tuple(Phase(names[part[0]], int(part[1:])) for part in text.split(","))


KENNEN_I = (("sgd", 0.1), ("sgd", 1.0), ("sign", 0.01), ("sign", 0.03))  # (rule, lr)
KENNEN_IO = {  # (schedule, rule, lr)
    "warm start only (= kennen-o)": ("m250", "sgd", 0.1),
    "paper shape m200,q4,m50, sgd 0.1": ("m200,q4,m50", "sgd", 0.1),
    "paper shape m200,q4,m50, sign 0.01": ("m200,q4,m50", "sign", 0.01),
    "early m10,q2,m10,q2,m180, sign 0.01": ("m10,q2,m10,q2,m180", "sign", 0.01),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("method", choices=("kennen_i", "kennen_io"))
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--epochs", type=int, default=30, help="kennen-i epochs per candidate")
    args = p.parse_args()
    params = load_params(args.params)
    boxes = read_boxes(Path("data/queries/boxes.csv"))
    train = set(json.loads(Path("data/splits/r.json").read_text())["train"])
    # A by-configuration 80/20 carve of the training boxes, with its own seed (as for kennen-o's optimiser).
    val = random_split([b for b in boxes if b["box"] in train], SplitParams(test_fraction=0.2), seed=99)
    print(f"{len(val['train'])} training / {len(val['test'])} validation boxes")
    source = ZooSource.at(Path("data/zoo/shards"), Path("data/zoo/models.csv"), boxes)
    mnist = mnist_data.load(Path("data/mnist.npz"))
    seed = base_seed(params)
    if args.method == "kennen_i":
        kp = section(KennenIParams, params, "kennen_i")
        n = len(mnist.test_images)
        init = mnist_data.normalise(mnist.test_images[draw_images(n, len(ATTRIBUTES), derive(seed, Purpose.KENNEN_I))])
        for rule, lr in KENNEN_I:
            start = time.perf_counter()
            cand = dataclasses.replace(kp, epochs=args.epochs, step=dataclasses.replace(kp.step, lr=lr, rule=rule))
            r = run_target(kp.target, source, val["train"], val["test"], init, cand, derive(seed, Purpose.KENNEN_I))
            acc = accuracies(r["y_true"], r["y_pred"])["acc.mean"]
            print(f"kennen-i {rule} lr {lr:<5} {args.epochs} epochs: validation mean {acc:5.1f}%  "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
        return
    ko = section(KennenOParams, params, "kennen_o")
    kp = section(KennenIOParams, params, "kennen_io")
    _, query_index = load_outputs(Path("data/queries/outputs.npz"))
    init = mnist_data.normalise(mnist.test_images[query_index[: kp.n_queries]])
    for name, (sched, rule, lr) in KENNEN_IO.items():
        start = time.perf_counter()
        step = dataclasses.replace(kp.step, lr=lr, rule=rule)
        cand = dataclasses.replace(kp, schedule=schedule(sched), step=step)
        r = run_split("val", source, {"val": val}, init, cand, ko.hidden, ko.optimisers[ko.optimiser],
                      derive(seed, Purpose.KENNEN_IO))  # fmt: skip
        acc = accuracies(r["y_true"], r["y_pred"])["acc.mean"]
        moved = float(np.abs(r["queries"] - (init * mnist_data.STD + mnist_data.MEAN).clip(0, 1)).mean())
        print(f"kennen-io {name:45s} validation mean {acc:5.1f}%  (mean |pixel change| {moved:.3f}, "
              f"{time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
