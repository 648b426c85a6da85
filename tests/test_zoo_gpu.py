"""The GPU benchmark (benchmarks/zoo_gpu.py) on the CPU with tiny params, and the paper profile it measures."""

import importlib.util
import json

import pytest
import torch
import yaml

from kennen import data as mnist_data
from kennen.config import base_seed, load_params, section
from kennen.io import read_csv
from kennen.zoo.fused import fusion_groups
from kennen.zoo.net import NetConfig
from kennen.zoo.sample import SampleParams, sample_zoo
from kennen.zoo.train import TrainParams, TrainSpec
from tests.conftest import REPO, tiny_params

TRAINERS = ("loop", "fused_small", "fused")


def _bench():
    spec = importlib.util.spec_from_file_location("zoo_gpu", REPO / "benchmarks" / "zoo_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report(idx_dir, tmp_path_factory):
    """One tiny run: 2 fused groups of at most 3 models, 3 of their members by loop, 1 epoch on 400 images."""
    tmp = tmp_path_factory.mktemp("zoo_gpu")
    npz, out = tmp / "mnist.npz", tmp / "zoo_gpu.json"
    mnist_data.save(mnist_data.read_idx_dir(idx_dir), npz)
    argv = ["--device", "cpu", "--data", str(npz), "--pool", "400", "--epochs", "1", "--groups", "2"]
    argv += ["--loop-models", "3", "--fuse-max", "3", "--warmup-images", "64", "--out", str(out)]
    assert _bench().main(argv) == 0
    return json.loads(out.read_text())


@pytest.mark.slow
def test_report_is_stamped_with_command_machine_and_regimes(report):
    assert report["command"].startswith("python benchmarks/zoo_gpu.py --device cpu")
    assert report["device"] == "cpu" and report["machine"]["torch"] == torch.__version__
    assert report["regimes"]["default"] == {
        "params": "params.yaml",
        "epochs": 1,
        "pool_size": 400,
        "measured": "trained in full",
    }
    assert report["regimes"]["paper"]["epochs"] == 100 and "extrapolated" in report["regimes"]["paper"]["measured"]
    assert report["paper_reported"]["zoo_gpu_hours"] == 960  # 40 GPU-days


def test_every_trainer_trained_its_models_and_its_rates_are_positive(report):
    t = report["trainers"]
    assert set(t) == set(TRAINERS)
    assert t["loop"]["models"] == t["fused_small"]["models"] == 3 and t["fused"]["models"] >= 3
    assert t["loop"]["group_sizes"] == [1, 1, 1] and max(t["fused"]["group_sizes"]) <= 3
    assert set(t["loop"]["test_acc"]) == set(t["fused_small"]["test_acc"]) <= set(t["fused"]["test_acc"])
    for m in t.values():
        assert m["tasks"] == m["tasks_planned"]  # no budget given: every task measured
        assert m["wall_s"] > m["fixed_s"] > 0
        assert m["models_per_hour"] == pytest.approx(3600 * m["models"] / m["wall_s"], rel=1e-3)
        assert 0 < m["paper_models_per_hour"] < m["models_per_hour"]  # 100 epochs against 1
        assert all(0 <= a <= 100 for a in m["test_acc"].values())
    for name in ("fused_small", "fused"):
        assert t[name]["paired_to_loop"]["models"] == 3


def test_projections_follow_from_the_measured_rates(report):
    pr = report["projections"]
    assert pr["models"] == 10_000 and pr["paper_reported_hours"] == 960
    steps = pr["zoo_steps_per_epoch"]
    assert steps["loop"] > steps["fused_small"] > steps["fused"] > 0  # bigger groups, fewer steps
    for name, m in report["trainers"].items():
        hours, by_steps = pr["hours"][name], pr["hours_by_steps"][name]
        assert hours["paper_zoo"] == pytest.approx(10_000 / m["paper_models_per_hour"], rel=1e-3)
        assert hours["default_zoo"] == pytest.approx(10_000 / m["models_per_hour"], rel=1e-3)
        assert hours["paper_zoo"] > hours["default_zoo"] and by_steps["paper_zoo"] > by_steps["default_zoo"]
        assert m["ms_per_step"] == pytest.approx(1000 * (m["wall_s"] - m["fixed_s"]) / m["steps"], rel=1e-3)
        fixed = 10_000 * m["fixed_s"] / m["models"]
        expected = (fixed + 100 * steps[name] * m["ms_per_step"] / 1000) / 3600
        assert by_steps["paper_zoo"] == pytest.approx(expected, rel=1e-3)


def test_steps_of_a_loop_model_and_of_a_fused_group():
    bench = _bench()
    net = NetConfig("relu", False, True, 5, 2, 2)
    a, b = TrainSpec(0, net, "sgd", 64, "all", 1, 1), TrainSpec(1, net, "adam", 256, "quarter_2", 2, 1)
    assert bench.steps_per_epoch((a,), 60_000) == 938 and bench.steps_per_epoch((b,), 60_000) == 59
    assert bench.steps_per_epoch((a, b), 60_000) == 938  # a group steps until its longest member is done


def test_reproject_recomputes_the_same_projections(report, tmp_path):
    src, out = tmp_path / "in.json", tmp_path / "out.json"
    src.write_text(json.dumps(report))
    assert _bench().main(["--reproject", str(src), "--out", str(out)]) == 0
    again = json.loads(out.read_text())
    assert again["projections"] == report["projections"] and again["reprojected"].endswith(str(out))


def test_paper_regime_is_fixed_cost_plus_100_epochs():
    m = {"wall_s": 10.0, "fixed_s": 2.0, "models": 4, "test_acc": {0: 98.0, 1: 9.8, 2: 97.0, 3: 96.0}}
    r = _bench().rates(m, epochs=2, paper_epochs=100)
    assert r["paper_s_per_model"] == pytest.approx((2 + 100 * 4) / 4, abs=1e-3)  # 4 s an epoch for the 4 models
    assert r["models_per_hour"] == 1440.0 and r["paper_models_per_hour"] == round(3600 * 4 / 402, 2)
    assert (r["mean_test_acc"], r["median_test_acc"], r["dead"]) == (75.2, 96.5, 1)


def test_render_names_every_trainer_and_the_command(report, tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    text = _bench().render(report, str(path))
    assert all(f"| `{name}` |" in text for name in TRAINERS)
    assert report["command"] in text and "960 GPU-hours" in text and str(path) in text


def test_paper_profile_trains_fused_on_cuda_in_shards_that_fill_the_groups():
    paper = load_params(REPO / "profiles" / "paper.yaml")
    tp, sp = section(TrainParams, paper, "train_zoo"), section(SampleParams, paper, "sample_zoo")
    assert (tp.trainer, tp.device, tp.epochs, tp.pool_size, sp.n_models) == ("fused", "cuda", 100, 60_000, 10_000)
    assert list(tp.shards) == list(range(sp.n_shards))
    shard0 = [TrainSpec.of(r, tp.epochs) for r in sample_zoo(sp, base_seed(paper)) if r["shard"] == 0]
    groups = fusion_groups(shard0, tp.fuse_max)
    assert len(shard0) / len(groups) > 40  # a shard of 100 would give groups of about 3


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_a_gpu_is_a_one_line_error():
    with pytest.raises(SystemExit, match="torch sees no CUDA device here"):
        _bench().main(["--device", "cuda"])


@pytest.mark.slow
def test_paper_profile_runs_on_cpu_under_tiny_params(idx_dir, tmp_path, monkeypatch):
    """``profiles/paper.yaml`` with tiny sizes and ``device: cpu``: its zoo trains with the fused trainer and its
    metamodel stages run on what it trains, so that on a GPU the paper's run is that profile as it is."""
    from tests.conftest import run_stage as _run_stage

    params = tiny_params(idx_dir, "profiles/paper.yaml", train_zoo={"device": "cpu", "checkpoints": []})
    tp = section(TrainParams, params, "train_zoo")
    assert (tp.trainer, params["kennen_o"]["boxes"], params["kennen_o_sweep"]["curves"]) == (
        "fused",
        "final",
        ["final"],
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")
    stages = ["data", "sample_zoo", ("train_zoo", 0), ("train_zoo", 1), "zoo_table", "prune", "ensembles"]
    for stage in [*stages, "queries", "splits", "kennen_o", ("kennen_o_sweep", "n_train")]:
        assert _run_stage(tmp_path, stage) == 0, stage
    models = read_csv(tmp_path / "data/zoo/models.csv")
    assert len(models) == params["sample_zoo"]["n_models"] and all(float(m["test_acc"]) > 0 for m in models)
    m = json.loads((tmp_path / "reports/metrics/kennen_o.json").read_text())
    assert m["cv.checkpoint_boxes"] == 0 and "cv.final_boxes.acc.mean" not in m  # the paper's boxes only
    assert m["cv.n_boxes"] == len(read_csv(tmp_path / "data/queries/boxes.csv"))
