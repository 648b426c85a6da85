"""The real pipeline under ``dvc repro``, on tiny params in a temporary repo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from kennen import data as mnist_data
from kennen.attributes import KEYS
from kennen.metamodel.kennen_o import KennenO
from kennen.queries import load_outputs, read_boxes
from kennen.zoo.store import load_model, read_table
from tests.conftest import dvc, dvc_env

pytestmark = pytest.mark.slow

ZOO_STAGES = ("data", "sample_zoo", "train_zoo@0", "train_zoo@1", "zoo_table", "prune", "ensembles", "zoo_report")
METAMODEL_STAGES = (
    "choices@kennen_o",
    "choices@kennen_i",
    "choices@kennen_io",
    "queries",
    "splits",
    "kennen_o",
    "kennen_o_sweep@n_train",
    "kennen_o_sweep@n_queries",
    "kennen_o_sweep@output",
    "kennen_o_sweep@extrapolation",
    "levers",
    "kennen_i",
    "kennen_io",
    "defences",
    "imagenet_zoo",
    "imagenet_probe",
    "imagenet_attack",
    "transfer_boxes",
    "transfer",
    "report",
)


def ran(output: str) -> set[str]:
    """Stages that `dvc repro` actually executed, read from its output."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def test_repro_builds_the_zoo_and_is_idempotent(pipeline_copy):
    out = dvc(pipeline_copy, "repro").stdout
    assert ran(out) == set(ZOO_STAGES) | set(METAMODEL_STAGES)

    models = read_table(pipeline_copy / "data/zoo/models.csv")
    assert [m["model_id"] for m in models] == list(range(8))
    assert all(0 <= m["test_acc"] <= 100 for m in models)
    assert "train_seconds" not in models[0]  # wall-clock times live in reports/metrics/train_zoo
    ensembles = read_table(pipeline_copy / "data/zoo/ensembles.csv")
    assert len(ensembles) == 4  # one configuration with 3 seeds: 3 pairs + 1 triple, nothing pruned (min_acc 0)
    metrics = json.loads((pipeline_copy / "reports/metrics/zoo.json").read_text())
    assert metrics["n_models"] == 8 and metrics["n_kept"] == 8 and metrics["n_ensembles"] == 4
    for name in ("acc_hist", "acc_by_attribute", "composition"):
        assert (pipeline_copy / f"reports/plots/zoo/{name}.csv").is_file()
        assert (pipeline_copy / f"reports/figures/zoo/{name}.png").stat().st_size > 1000

    check_query_outputs(pipeline_copy)
    kennen_o = json.loads((pipeline_copy / "reports/metrics/kennen_o.json").read_text())
    assert {f"acc.{k}" for k in KEYS} | {"acc.mean", "default.acc.mean", "official.acc.mean"} <= set(kennen_o)
    for method in ("kennen_o", "kennen_i", "kennen_io"):  # the headline files repeat the metrics' first keys
        full = json.loads((pipeline_copy / f"reports/metrics/{method}.json").read_text())
        head = json.loads((pipeline_copy / f"reports/metrics/headline/{method}.json").read_text())
        assert list(head)[:2] == ["cv.acc_config.mean", "cv.acc_config.mean_low"] and head.items() <= full.items()
    page = (pipeline_copy / "reports/README.md").read_text()
    assert "Table 2" in page and "73.4" in page  # the paper's kennen-o next to ours
    for sweep in ("n_train", "n_queries", "output", "extrapolation"):
        assert (pipeline_copy / f"reports/figures/kennen_o/sweep_{sweep}.png").is_file()
    check_crafted(pipeline_copy, kennen_o)
    defences = json.loads((pipeline_copy / "reports/metrics/defences.json").read_text())
    assert len(defences["settings"]) == 8 and "whitebox" in defences and "Output defences" in page

    assert "Data and pipelines are up to date" in dvc(pipeline_copy, "status").stdout
    assert ran(dvc(pipeline_copy, "repro").stdout) == set()
    shown = dvc(pipeline_copy, "metrics", "show", "--json").stdout
    assert '"n_ensembles": 4' in shown.replace(" ", "").replace('"n_ensembles":4', '"n_ensembles": 4')


def test_changing_ensembles_reruns_only_downstream(pipeline_copy):
    # The zoo stages and queries only: the one end-to-end repro is the test above (to keep CI time down).
    dvc(pipeline_copy, "repro", "zoo_report", "queries")
    params = yaml.safe_load((pipeline_copy / "params.yaml").read_text())
    params["ensembles"]["max_members"] = 2
    (pipeline_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    again = ran(dvc(pipeline_copy, "repro", "zoo_report", "queries").stdout)
    assert {"ensembles", "zoo_report", "queries"} <= again
    assert not again & {"data", "sample_zoo", "train_zoo@0", "train_zoo@1", "zoo_table", "prune"}
    assert json.loads((pipeline_copy / "reports/metrics/zoo.json").read_text())["n_ensembles"] == 3  # pairs only


def test_kill_mid_training_then_rerun_trains_only_unfinished_models(pipeline_copy):
    params = yaml.safe_load((pipeline_copy / "params.yaml").read_text())
    params["train_zoo"]["epochs"] = 40  # slow enough to be killed inside shard 1
    (pipeline_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "zoo_table"],
        cwd=pipeline_copy,
        env=dvc_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    # Kill once the second shard DVC runs (in either order) has kept its first model (data/zoo/partial).
    lock, shards = pipeline_copy / "dvc.lock", pipeline_copy / "data/zoo/shards"
    deadline = time.monotonic() + 300
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, "no shard was ever in flight after another"
        done = [s for s in (0, 1) if f"train_zoo@{s}" in (lock.read_text() if lock.exists() else "")]
        if len(done) == 1:
            partial = pipeline_copy / f"data/zoo/partial/shard-{1 - done[0]}"
            if list(partial.glob("model-*.safetensors")):
                break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished, killed = done[0], 1 - done[0]
    kept = len(list(partial.glob("model-*.safetensors")))
    assert (shards / f"shard-{finished}.csv").is_file() and (shards / f"shard-{finished}.safetensors").is_file()
    assert not (shards / f"shard-{killed}.csv").exists() and not (shards / f"shard-{killed}.safetensors").exists()

    proc = dvc(pipeline_copy, "repro", "zoo_table")
    out = proc.stdout
    assert f"train_zoo@{finished}" not in ran(out)
    assert {f"train_zoo@{killed}", "zoo_table"} <= ran(out)
    assert f"resuming, {kept} of 4 models already trained" in out + proc.stderr  # only the rest retrained
    assert not partial.exists()
    assert not list(shards.glob(".*.tmp"))
    assert len(read_table(pipeline_copy / "data/zoo/models.csv")) == 8


def check_query_outputs(root):
    """Singles' rows are their models' log-probabilities; ensembles' rows the mean of their members' rows."""
    outputs, query_index = load_outputs(root / "data/queries/outputs.npz")
    boxes = read_boxes(root / "data/queries/boxes.csv")
    assert outputs.shape == (len(boxes), 20, 10) and outputs.dtype == np.float32
    x = torch.from_numpy(mnist_data.normalise(mnist_data.load(root / "data/mnist.npz").test_images[query_index]))
    models = {m["model_id"]: m for m in read_table(root / "data/zoo/models.csv")}
    row_of = {b["id"]: b["box"] for b in boxes if b["kind"] == "single"}
    for box in boxes:
        if box["kind"] == "single":
            with torch.no_grad():
                expected = load_model(root / "data/zoo/shards", models[box["id"]])(x).numpy()
            np.testing.assert_allclose(outputs[box["box"]], expected, rtol=1e-5, atol=1e-5)
        else:
            members = [row_of[int(m)] for m in box["members"].split(";")]
            np.testing.assert_allclose(outputs[box["box"]], outputs[members].mean(0), rtol=1e-6, atol=1e-6)


def test_ensemble_outputs_with_no_ensembles():
    from kennen.queries import ensemble_outputs

    assert ensemble_outputs({}, [], 7).shape == (0, 7, 10)
    single = {1: np.zeros((7, 10), np.float32), 2: np.ones((7, 10), np.float32)}
    np.testing.assert_array_equal(ensemble_outputs(single, [[1, 2]], 7)[0], np.full((7, 10), 0.5, np.float32))


def check_crafted(repo: Path, kennen_o: dict) -> None:
    """kennen-i and kennen-io smoke run: same metric keys as kennen-o, valid images, a loadable MLP, the report."""
    keys = {f"acc.{k}" for k in KEYS} | {"acc.mean", "n_train", "n_test"}
    kennen_i = json.loads((repo / "reports/metrics/kennen_i.json").read_text())
    assert keys | {"in_range", "each.acc.mean", "all.acc.mean"} <= set(kennen_i)
    kennen_io = json.loads((repo / "reports/metrics/kennen_io.json").read_text())
    assert keys <= set(kennen_io) and kennen_io["n_train"] == kennen_o["n_train"]
    intervals = {f"acc.{k}_{end}" for k in (*KEYS, "mean") for end in ("low", "high")}
    assert intervals <= set(kennen_i) and intervals <= set(kennen_io)
    gap = {f"gap_vs_o.{k}" for k in ("diff", "low", "high", "beyond_noise", "o_mean")}
    assert gap | {"queries.moved", "query_phase1.loss_before", "query_phase1.loss_after"} <= set(kennen_io)
    assert (repo / "reports/plots/kennen_io/phases.csv").is_file()
    images = load_file(str(repo / "models/kennen_i.safetensors"))
    assert images["queries.each"].shape == (12, 1, 28, 28) and images["queries.all"].shape == (1, 1, 28, 28)
    io = load_file(str(repo / "models/kennen_io.safetensors"))
    assert io["queries"].shape == (5, 1, 28, 28)
    for q in (images["queries.each"], io["queries"]):
        assert float(q.min()) >= 0.0 and float(q.max()) <= 1.0
    model = KennenO(50, 16)
    model.load_state_dict({k.removeprefix("mlp."): v for k, v in io.items() if k.startswith("mlp.")})
    for name in ("kennen_i/queries.png", "kennen_i/confusion.png", "kennen_io/queries.png"):
        assert (repo / "reports/figures" / name).stat().st_size > 1000
    page = (repo / "reports/README.md").read_text()
    assert "kennen-i, one query per attribute (headline)" in page and "paper: kennen-io" in page
    assert "the paper: kennen-io (80.1) > kennen-o (73.4) > kennen-i (52.7)" in page
    probe = json.loads((repo / "reports/metrics/imagenet_probe.json").read_text())
    assert probe["mode"] == "offline" and probe["n_models"] == 8 and {"acc.n5", "acc.n20"} <= set(probe)
    assert "Offline surrogate, not the paper's experiment" in page and "90.4" in page
    attack = json.loads((repo / "reports/metrics/attack.json").read_text())
    assert attack["mode"] == "offline" and set(attack["table5"]) == {
        "white_box",
        "true_family",
        "predicted_family",
        "all_families",
    }
    assert "Family-aware adversarial examples" in page and "the paper's conclusion" in page


def test_retraining_identical_weights_and_growing_the_zoo_rerun_only_what_changed(pipeline_copy):
    dvc(pipeline_copy, "repro", "zoo_table")
    # A forced retrain gives byte-identical shards (no wall-clock column): nothing downstream reruns.
    before = (pipeline_copy / "data/zoo/shards/shard-0.csv").read_bytes()
    dvc(pipeline_copy, "repro", "--force", "--single-item", "train_zoo@0")
    assert (pipeline_copy / "data/zoo/shards/shard-0.csv").read_bytes() == before
    assert ran(dvc(pipeline_copy, "repro", "zoo_table").stdout) == set()
    assert (pipeline_copy / "reports/metrics/train_zoo/shard-0.json").is_file()

    # Growing n_models appends to the sample: shards 0 and 1 keep their models and are not retrained.
    old = read_table(pipeline_copy / "data/zoo/models.csv")
    params = yaml.safe_load((pipeline_copy / "params.yaml").read_text())
    params["sample_zoo"]["n_models"] = 12
    params["train_zoo"]["shards"] = [0, 1, 2]
    (pipeline_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(dvc(pipeline_copy, "repro", "zoo_table").stdout) == {"sample_zoo", "train_zoo@2", "zoo_table"}
    grown = read_table(pipeline_copy / "data/zoo/models.csv")
    assert grown[:8] == old and len(grown) == 12
