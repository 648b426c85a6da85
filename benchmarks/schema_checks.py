"""What the input checks cost a default run: every stage's reading of the zoo's outputs and weights, checked
against unchecked, on the files of the last ``dvc repro`` (budget: 2% of the run's wall time).

Times in one command, best of ``--repeat`` each:

- ``outputs.npz``: ``np.load`` of the two arrays (unchecked) against ``kennen.queries.load_outputs`` with the
  boxes table (bounded read, shapes, finite log-probability rows, query indices, every ensemble row the mean
  of its members' rows);
- the zoo's tables and weights: ``kennen.schemas.check_zoo`` and ``check_shards`` (headers of every kept
  model's tensors), as the stages that read weights run them.

Each check's extra seconds are multiplied by the number of stages (``foreach`` items counted) whose
``dvc.yaml`` deps hold the file it checks, and the sum is set against the run's wall time, which the caller
measured (``--pipeline-seconds``). Usage, after ``dvc repro``:

    python benchmarks/schema_checks.py --pipeline-seconds 4200 [--out reports/bench/schema_checks.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from kennen.io import write_json
from kennen.queries import load_outputs, read_boxes
from kennen.schemas import ENSEMBLES, MODELS, check_shards, check_zoo
from kennen.zoo.prune import read_kept
from kennen.zoo.store import read_table


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    """The fastest of ``repeat`` calls of ``fn``, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def readers(dvc_yaml: Path, dep: str) -> int:
    """How many stages list ``dep`` among their deps: ``foreach`` items and literal ``matrix`` cells counted, a
    ``matrix`` axis that is a params reference (``${train_zoo.shards}``) once."""
    n = 0
    for spec in yaml.safe_load(dvc_yaml.read_text())["stages"].values():
        body = spec.get("do", spec)  # a foreach stage keeps its command and deps under "do"
        if dep in body.get("deps", []):
            if "foreach" in spec:
                n += len(spec["foreach"])
            elif "matrix" in spec:
                n += int(np.prod([len(v) if isinstance(v, list) else 1 for v in spec["matrix"].values()]))
            else:
                n += 1
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pipeline-seconds", type=float, required=True, help="wall time of the default dvc repro")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", default="reports/bench/schema_checks.json")
    a = p.parse_args()
    outputs, boxes_csv, zoo = Path("data/queries/outputs.npz"), Path("data/queries/boxes.csv"), Path("data/zoo")
    boxes = read_boxes(boxes_csv)

    def raw() -> None:
        with np.load(outputs) as z:
            z["outputs"], z["query_index"]

    models_path, kept_path, ens_path = zoo / "models.csv", zoo / "kept.json", zoo / "ensembles.csv"
    models, kept, ensembles = read_table(models_path, MODELS), read_kept(kept_path), read_table(ens_path, ENSEMBLES)

    def zoo_checks() -> None:
        check_zoo(models, kept, ensembles, models_path, kept_path, ens_path)
        check_shards(zoo / "shards", models, kept, models_path)

    unchecked = best_of(raw, a.repeat)
    checked = best_of(lambda: load_outputs(outputs, boxes), a.repeat)
    zoo_seconds = best_of(zoo_checks, a.repeat)
    dvc_yaml = Path(__file__).resolve().parents[1] / "dvc.yaml"
    n_outputs, n_shards = readers(dvc_yaml, str(outputs)), readers(dvc_yaml, str(zoo / "shards"))
    extra = (checked - unchecked) * n_outputs + zoo_seconds * n_shards
    result = {
        "outputs_shape": list(np.load(outputs)["outputs"].shape),
        "outputs_unchecked_s": round(unchecked, 4),
        "outputs_checked_s": round(checked, 4),
        "outputs_readers": n_outputs,
        "zoo_checks_s": round(zoo_seconds, 4),
        "shards_readers": n_shards,
        "extra_s_per_run": round(extra, 2),
        "pipeline_s": a.pipeline_seconds,
        "share_of_run_percent": round(100 * extra / a.pipeline_seconds, 3),
        "machine": platform.processor() or platform.machine(),
        "command": "python benchmarks/schema_checks.py --pipeline-seconds " + f"{a.pipeline_seconds:g}",
    }
    print(json.dumps(result, indent=1))
    write_json(Path(a.out), result)


if __name__ == "__main__":
    main()
