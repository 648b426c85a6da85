"""Train a handful of fresh MNIST classifiers outside the zoo, save them, and run `kennen whiten` on each.

The boxes are drawn uniformly from Table 1 with torch seeds the zoo never uses, trained
as the zoo's are (`train_zoo` params of params.yaml), saved as torch.export programs
under --out, and then whitened with the trained metamodels in models/. Usage, after
`dvc repro` (or `dvc pull`):

    python scripts/whiten_demo.py [--boxes 8] [--out demo] [--seed 0]

Prints the first box's `kennen whiten` table and, over the boxes whose test accuracy reaches
`prune.min_acc` (the zoo keeps only those; the others are listed, not scored), the accuracy of the
most probable value of every attribute against the truth, next to chance, and how many of the
answers clear the metamodels' default threshold (`calibration.target_accuracy`) with their accuracy: once with the boxes' scores
(log-probabilities, the command line) and once with their top-1 labels only (the Python API with
a label-only wrapper, so kennen-i).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from kennen.attributes import ATTRIBUTES, BY_KEY, SAMPLED, n_par_class, size_of_split
from kennen.config import load_params, section
from kennen.io import write_csv
from kennen.whiten import load_target, whiten
from kennen.zoo.net import MnistNet, NetConfig, count_params
from kennen.zoo.prune import PruneParams
from kennen.zoo.train import TrainParams, TrainSpec, load_train_data, train_model

SEED_BASE = 10**9  # torch seeds of the demo boxes: far from the zoo's derived seeds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--boxes", type=int, default=8)
    p.add_argument("--out", type=Path, default=Path("demo"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    params = load_params()
    tp, min_acc = section(TrainParams, params, "train_zoo"), section(PruneParams, params, "prune").min_acc
    data = load_train_data(str(Path("data/mnist.npz").resolve()), tp.pool_size, tp.perm_seed, tp.test_batch)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(args.boxes):
        draw = {a.key: a.values[rng.integers(a.n_classes)] for a in SAMPLED}
        cfg = NetConfig.of(draw)
        spec = TrainSpec(i, cfg, draw["alg"], draw["bs"], draw["split"], SEED_BASE + i, tp.epochs)
        result = train_model(spec, data)
        net = MnistNet(cfg)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in result.state.items()})
        net.eval()
        batch = torch.export.Dim("batch", min=1, max=4096)
        program = torch.export.export(net, (torch.zeros(4, 1, 28, 28),), dynamic_shapes={"x": {0: batch}})
        path = args.out / f"box{i}.pt2"
        torch.export.save(program, str(path))
        truth = {**draw, "ens": False, "size": size_of_split(draw["split"]), "n_par": n_par_class(count_params(cfg))}
        rows.append({"box": path.name, "test_acc": round(result.test_acc, 2), **truth})
        print(f"{path}: test accuracy {result.test_acc:.1f}%", file=sys.stderr)
    write_csv(args.out / "truth.csv", rows, list(rows[0]))

    hits: dict[str, dict[str, list[bool]]] = {"scores": {}, "labels": {}}
    answered: dict[str, list[bool]] = {"scores": [], "labels": []}
    right_answered: dict[str, list[bool]] = {"scores": [], "labels": []}
    scored = [row for row in rows if row["test_acc"] >= min_acc]
    for row in rows:
        if row["test_acc"] < min_acc:
            print(
                f"{row['box']}: test accuracy {row['test_acc']}% < prune.min_acc {min_acc}: not scored", file=sys.stderr
            )
    for i, row in enumerate(scored):
        path = args.out / row["box"]
        cmd = ["kennen", "whiten", str(path), "--output-type", "logprob"]
        if i == 0:
            print("$ " + " ".join(cmd))
            print(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        scores = json.loads(subprocess.run([*cmd, "--json"], check=True, capture_output=True, text=True).stdout)
        box = load_target(str(path))
        labels = whiten(lambda x, box=box: np.asarray(box(x)).argmax(1), str(path), "label").as_dict()
        for kind, report in (("scores", scores), ("labels", labels)):
            for f in report["attributes"]:
                a = BY_KEY[f["attribute"]]
                right = f["best_guess"] == a.labels[a.index(row[a.key])]
                hits[kind].setdefault(a.key, []).append(right)
                answered[kind].append(f["answered"])
                if f["answered"]:
                    right_answered[kind].append(right)
    if not scored:
        print(f"no box reached prune.min_acc {min_acc}: nothing scored", file=sys.stderr)
        return
    chance = float(np.mean([a.chance for a in ATTRIBUTES]))
    for kind, method in (("scores", scores["method"]), ("labels", "kennen-i")):
        acc = {k: 100 * float(np.mean(v)) for k, v in hits[kind].items()}
        sure = right_answered[kind]
        sure_text = f"{100 * np.mean(sure):.0f}% right" if sure else "none"
        print(f"{kind} ({method}) over {len(scored)} fresh boxes: mean accuracy {np.mean(list(acc.values())):.1f}% "
              f"(chance {chance:.1f}%); " + ", ".join(f"{k} {v:.0f}%" for k, v in acc.items())
              + f"; answered {100 * np.mean(answered[kind]):.0f}% of attributes, of those {sure_text}")  # fmt: skip


if __name__ == "__main__":
    main()
