"""What recording checkpoint outputs costs the zoo trainer, in one command: the same models trained with and
without ``train_zoo.checkpoints``.

Trains ``--models`` rows spread over the default sample (its mix of configurations, ``train_zoo.epochs`` on the
first ``train_zoo.pool_size`` images) with the pipeline's ``loop`` trainer on one thread, each model twice in
alternating order (plain, then with the checkpoints of ``params.yaml``; the next model the other way round), and
prints the seconds of each, their ratio, whether the weights are bit for bit the same (NaN equal to NaN: a
diverged model), and the bytes the
checkpoint outputs take per model (float32 [checkpoints, checkpoint_queries, 10]). Usage, after ``dvc repro data``:

    python benchmarks/checkpoint_cost.py [--models 6] [--out reports/bench/checkpoint_cost.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time

import numpy as np

from kennen.config import base_seed, load_params, section
from kennen.io import write_json
from kennen.zoo.sample import SampleParams, sample_zoo
from kennen.zoo.train import TrainParams, TrainSpec, load_train_data, probe_images, single_thread, train_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=6)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--data", default="data/mnist.npz")
    p.add_argument("--out", default="reports/bench/checkpoint_cost.json")
    a = p.parse_args()
    params = load_params(a.params)
    tp, seed = section(TrainParams, params, "train_zoo"), base_seed(params)
    rows = sample_zoo(section(SampleParams, params, "sample_zoo"), seed)
    picks = np.linspace(0, len(rows) - 1, min(a.models, len(rows))).round().astype(int)
    data = load_train_data(a.data, tp.pool_size, tp.perm_seed, tp.test_batch)
    probes = probe_images(a.data, seed, tp.checkpoint_queries)
    seconds = {"plain": [], "checkpoints": []}
    same = []
    with single_thread("cpu"):
        for k, i in enumerate(picks):
            spec = TrainSpec.of(rows[i], tp.epochs)
            runs = {}
            for kind in ("plain", "checkpoints") if k % 2 == 0 else ("checkpoints", "plain"):
                s = dataclasses.replace(spec, checkpoints=tp.checkpoints) if kind == "checkpoints" else spec
                start = time.perf_counter()
                runs[kind] = train_model(s, data, probe_x=probes if kind == "checkpoints" else None)
                seconds[kind].append(time.perf_counter() - start)
            state = runs["checkpoints"].state  # a diverged model's NaN weights compare equal to NaN
            same.append(all(np.array_equal(v, state[n], equal_nan=True) for n, v in runs["plain"].state.items()))
            print(f"model {spec.model_id}: {seconds['plain'][-1]:.1f} s plain, {seconds['checkpoints'][-1]:.1f} s "
                  f"with checkpoints, same weights: {same[-1]}", flush=True)  # fmt: skip
    total = {kind: sum(v) for kind, v in seconds.items()}
    result = {
        "models": len(picks),
        "checkpoints": list(tp.checkpoints),
        "checkpoint_queries": tp.checkpoint_queries,
        "plain_s": round(total["plain"], 1),
        "checkpoints_s": round(total["checkpoints"], 1),
        "ratio": round(total["checkpoints"] / total["plain"], 4),
        "same_weights": all(same),
        "bytes_per_model": len(tp.checkpoints) * tp.checkpoint_queries * 10 * 4,
        "machine": platform.processor() or platform.machine(),
        "command": f"python benchmarks/checkpoint_cost.py --models {a.models}",
    }
    print(json.dumps(result, indent=1))
    write_json(a.out, result)


if __name__ == "__main__":
    main()
