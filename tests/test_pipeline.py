"""The real pipeline under ``dvc repro``, on tiny params in a temporary repo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from kennen.zoo.store import read_table
from tests.conftest import dvc

pytestmark = pytest.mark.slow

ZOO_STAGES = ("data", "sample_zoo", "train_zoo@0", "train_zoo@1", "zoo_table", "prune", "ensembles", "zoo_report")


def ran(output: str) -> set[str]:
    """Stages that `dvc repro` actually executed, read from its output."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def test_repro_builds_the_zoo_and_is_idempotent(pipeline_copy):
    out = dvc(pipeline_copy, "repro").stdout
    assert ran(out) >= set(ZOO_STAGES)

    models = read_table(pipeline_copy / "data/zoo/models.csv")
    assert [m["model_id"] for m in models] == list(range(8))
    assert all(0 <= m["test_acc"] <= 100 and m["train_seconds"] > 0 for m in models)
    ensembles = read_table(pipeline_copy / "data/zoo/ensembles.csv")
    assert len(ensembles) == 4  # one configuration with 3 seeds: 3 pairs + 1 triple, nothing pruned (min_acc 0)
    metrics = json.loads((pipeline_copy / "reports/metrics/zoo.json").read_text())
    assert metrics["n_models"] == 8 and metrics["n_kept"] == 8 and metrics["n_ensembles"] == 4
    for name in ("acc_hist", "acc_by_attribute", "composition"):
        assert (pipeline_copy / f"reports/plots/zoo/{name}.csv").is_file()
        assert (pipeline_copy / f"reports/figures/zoo/{name}.png").stat().st_size > 1000

    assert "Data and pipelines are up to date" in dvc(pipeline_copy, "status").stdout
    assert ran(dvc(pipeline_copy, "repro").stdout) == set()
    shown = dvc(pipeline_copy, "metrics", "show", "--json").stdout
    assert '"n_ensembles": 4' in shown.replace(" ", "").replace('"n_ensembles":4', '"n_ensembles": 4')


def test_changing_prune_reruns_only_downstream(pipeline_copy):
    dvc(pipeline_copy, "repro")
    params = yaml.safe_load((pipeline_copy / "params.yaml").read_text())
    params["prune"]["min_acc"] = 100.0
    (pipeline_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(dvc(pipeline_copy, "repro").stdout) == {"prune", "ensembles", "zoo_report"}
    assert json.loads((pipeline_copy / "reports/metrics/zoo.json").read_text())["n_ensembles"] == 0


def test_kill_mid_training_then_rerun_trains_only_unfinished_shards(pipeline_copy):
    params = yaml.safe_load((pipeline_copy / "params.yaml").read_text())
    params["train_zoo"]["epochs"] = 40  # slow enough to be killed inside shard 1
    (pipeline_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = os.environ | {"DVC_NO_ANALYTICS": "1", "KENNEN_EXECUTOR": "serial"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=pipeline_copy,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lock = pipeline_copy / "dvc.lock"
    deadline = time.monotonic() + 300
    while "train_zoo@0" not in (lock.read_text() if lock.exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, "shard 0 never finished"
        time.sleep(0.2)
    time.sleep(1.0)  # shard 1 is training now
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    shards = pipeline_copy / "data/zoo/shards"
    assert (shards / "shard-0.csv").is_file() and (shards / "shard-0.safetensors").is_file()
    assert not (shards / "shard-1.csv").exists() and not (shards / "shard-1.safetensors").exists()

    out = dvc(pipeline_copy, "repro").stdout
    assert "train_zoo@0" not in ran(out)
    assert {"train_zoo@1", "zoo_table"} <= ran(out)
    assert not list(shards.glob(".*.tmp"))
    assert len(read_table(pipeline_copy / "data/zoo/models.csv")) == 8
