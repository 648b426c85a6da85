"""Zoo training regimes: test accuracy against training cost (the default profile is chosen from it).

Trains one balanced sample of Table 1 configurations (every value of every sampled
attribute appears equally often, up to rounding) with the pipeline's own trainer
(``train_zoo.trainer: loop``) on the full training pool, reads the test accuracy
after each of ``--epochs``, and, in the same command, the same configurations in
the old default regime (one epoch on a 12,000-image pool) as the baseline of the
cost ratio. Usage:

    python benchmarks/zoo_regimes.py [--configs 24] [--epochs 1 2 3] [--out reports/bench/zoo_regimes.json]

Needs ``data/mnist.npz`` (``dvc repro data``). Cost is single-thread core-seconds of
training plus the zoo's one test pass per model, measured inside each worker; the
test passes after intermediate epochs are measured apart and not counted. Two
workers (one per core) run the tasks, as ``train_zoo`` does.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from kennen.attributes import SAMPLED, n_par_class, size_of_split
from kennen.io import write_json
from kennen.parallel import run_tasks
from kennen.seeds import Purpose, StableRng
from kennen.zoo.net import NetConfig, count_params
from kennen.zoo.sample import torch_seed
from kennen.zoo.train import TrainSpec, evaluate, load_train_data, train_model

SEED = 1515  # the sample's own seed, apart from the pipeline's base seed
DEAD = 11.5  # test accuracy at or below this is a constant classifier (9.8% is the most frequent digit)


def balanced_configs(n: int, seed: int = SEED) -> list[dict]:
    """``n`` configurations: each sampled attribute's values tiled to length ``n`` and shuffled independently."""
    rng = StableRng(seed, Purpose.SAMPLE)
    columns = {}
    for attr in SAMPLED:
        tiled = [attr.values[i % len(attr.values)] for i in range(n)]
        columns[attr.key] = [tiled[i] for i in rng.permutation_prefix(n)]
    rows = []
    for i in range(n):
        row = {k: columns[k][i] for k in columns}
        row |= {"model_id": i, "torch_seed": torch_seed(seed, i), "size": size_of_split(row["split"])}
        row["n_par"] = n_par_class(count_params(NetConfig.of(row)))
        rows.append(row)
    return rows


def _task(job: tuple[dict, int, int], data_path: str) -> dict:
    row, pool, epochs = job
    data = load_train_data(data_path, pool, 20, 256)
    spec = TrainSpec.of(row, epochs)
    curve, eval_seconds = [], 0.0

    def on_epoch(epoch: int, net) -> None:
        nonlocal eval_seconds
        start = time.perf_counter()
        acc = evaluate(net, data.test_x, data.test_y, data.test_batch)
        spent = time.perf_counter() - start
        eval_seconds += spent
        curve.append({"epoch": epoch + 1, "acc": acc, "test_seconds": spent})
        net.train()

    start = time.process_time()
    result = train_model(spec, data, on_epoch=on_epoch)
    total = time.process_time() - start
    # The final test pass of train_model repeats the last on_epoch one: count it once.
    train_seconds = total - eval_seconds - curve[-1]["test_seconds"]
    per_epoch = train_seconds / epochs
    return {
        "model_id": row["model_id"],
        "pool": pool,
        "curve": [
            {"epoch": c["epoch"], "acc": c["acc"], "core_seconds": per_epoch * c["epoch"] + c["test_seconds"]}
            for c in curve
        ],
        "diverged": result.diverged,
    }


def _summary(name: str, pool: int, epochs: int, points: list[dict], baseline_cost: float | None) -> dict:
    acc = [p["acc"] for p in points]
    cost = statistics.fmean(p["core_seconds"] for p in points)
    q = np.percentile(acc, [25, 50, 75])
    return {
        "regime": name,
        "pool": pool,
        "epochs": epochs,
        "models": len(acc),
        "acc_median": round(float(q[1]), 2),
        "acc_q25": round(float(q[0]), 2),
        "acc_q75": round(float(q[2]), 2),
        "acc_mean": round(statistics.fmean(acc), 2),
        "share_95": round(100 * np.mean([a >= 95 for a in acc]), 1),
        "share_98": round(100 * np.mean([a >= 98 for a in acc]), 1),
        "dead": sum(a <= DEAD for a in acc),
        "core_seconds_per_model": round(cost, 2),
        "cost_ratio": round(cost / baseline_cost, 2) if baseline_cost else 1.0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", type=int, default=24)
    p.add_argument("--epochs", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--pool", type=int, default=60000, help="training images the subsets are cut from (paper: 60,000)")
    p.add_argument("--baseline-pool", type=int, default=12000, help="pool of the one-epoch baseline (old default)")
    p.add_argument("--data", default="data/mnist.npz")
    p.add_argument("--out", default="reports/bench/zoo_regimes.json")
    args = p.parse_args(argv)
    if not Path(args.data).is_file():
        print(f"error: {args.data} not found (run `dvc repro data` first)", file=sys.stderr)
        return 2
    rows = balanced_configs(args.configs)
    jobs = [(r, args.pool, max(args.epochs)) for r in rows] + [(r, args.baseline_pool, 1) for r in rows]
    jobs.sort(key=lambda j: -j[2] * (1 if j[0]["pool"] else 4) * j[0]["n_conv"] * (j[1] / 60000))
    start = time.perf_counter()
    results = [res for _, res in run_tasks(_fn(args.data), jobs, len(jobs))]
    wall = time.perf_counter() - start

    base = [c for r in results if r["pool"] == args.baseline_pool for c in r["curve"]]
    base_summary = _summary(f"1 epoch, {args.baseline_pool:,} pool (old default)", args.baseline_pool, 1, base, None)
    table = [base_summary]
    for e in sorted(args.epochs):
        pts = [c for r in results if r["pool"] == args.pool for c in r["curve"] if c["epoch"] == e]
        table.append(
            _summary(f"{e} epoch(s), {args.pool:,} pool", args.pool, e, pts, base_summary["core_seconds_per_model"])
        )
    # Accuracy by attribute value at each full-pool regime: which parts of Table 1 lag.
    by_value = {}
    acc_of = {(r["model_id"], c["epoch"]): c["acc"] for r in results if r["pool"] == args.pool for c in r["curve"]}
    for e in sorted(args.epochs):
        for attr in SAMPLED:
            for v in attr.values:
                accs = [acc_of[(row["model_id"], e)] for row in rows if row[attr.key] == v]
                by_value[f"{e}.{attr.key}={v}"] = round(float(np.median(accs)), 2) if accs else None

    print(f"{'regime':<34}{'median':>8}{'q25':>7}{'mean':>7}{'>=95':>7}{'>=98':>7}{'dead':>6}{'core-s':>8}{'ratio':>7}")
    for t in table:
        print(
            f"{t['regime']:<34}{t['acc_median']:>8.2f}{t['acc_q25']:>7.2f}{t['acc_mean']:>7.2f}{t['share_95']:>7.1f}"
            f"{t['share_98']:>7.1f}{t['dead']:>6}{t['core_seconds_per_model']:>8.2f}{t['cost_ratio']:>6.2f}x"
        )
    write_json(
        args.out,
        {
            "command": "python benchmarks/zoo_regimes.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
            "wall_seconds": round(wall, 1),
            "regimes": table,
            "median_by_value": by_value,
            "models": [
                {"config": r, "pool": x["pool"], "curve": x["curve"]}
                for r in rows
                for x in results
                if x["model_id"] == r["model_id"]
            ],
        },
    )
    print(f"wall {wall:.0f} s; wrote {args.out}")
    return 0


def _fn(data_path: str):
    import functools

    return functools.partial(_task, data_path=str(Path(data_path).resolve()))


if __name__ == "__main__":
    raise SystemExit(main())
