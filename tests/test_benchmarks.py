"""Smoke tests of the benchmark scripts (and ``scripts/whiten_demo.py``) that have no test of their own, on tiny params.

Those that read the pipeline's outputs run on a tiny pipeline built by the real stages, in-process, from
their ``dvc.yaml`` command lines, in a temporary folder (as ``tests/test_kennen_o_stages.py`` does).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from kennen import data as mnist_data
from tests.conftest import REPO, TINY_EARLY_STOP, chdir, run_stage, tiny_copy, tiny_params

EARLY_STOP = TINY_EARLY_STOP


def _load(name: str, folder: str = "benchmarks"):
    spec = importlib.util.spec_from_file_location(name, REPO / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_upstream, tmp_path_factory) -> Path:
    """The pipeline up to ``splits`` (and the foreign boxes) on tiny params: a zoo of 8 models, its boxes' outputs
    and the splits."""
    return tiny_copy(tiny_upstream, tmp_path_factory, "bench_pipeline")


def _mnist(tmp_path: Path, idx_dir: Path) -> Path:
    path = tmp_path / "mnist.npz"
    mnist_data.save(mnist_data.read_idx_dir(idx_dir), path)
    return path


def test_checkpoint_cost_trains_the_same_weights_with_and_without(tmp_path, idx_dir, monkeypatch):
    params = tiny_params(idx_dir, train_zoo={"epochs": 3, "checkpoints": [1.0, 2.0], "checkpoint_queries": 20})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    mnist_data.save(mnist_data.read_idx_dir(idx_dir), tmp_path / "mnist.npz")
    out = tmp_path / "cost.json"
    argv = ["checkpoint_cost.py", "--models", "2", "--params", str(tmp_path / "params.yaml")]
    monkeypatch.setattr(sys, "argv", [*argv, "--data", str(tmp_path / "mnist.npz"), "--out", str(out)])
    _load("checkpoint_cost").main()
    result = json.loads(out.read_text())
    assert result["models"] == 2 and result["same_weights"] is True
    assert result["bytes_per_model"] == 2 * 20 * 10 * 4 and result["ratio"] > 0


def _one_thread_bench(tmp_path: Path, idx_dir: Path, name: str, epochs: int) -> tuple[list[str], Path]:
    """The command line of a one-thread zoo benchmark on 2 models of the tiny params, and its output file."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(idx_dir)))
    out = tmp_path / f"{name}.json"
    argv = [f"{name}.py", "--models", "2", "--epochs", str(epochs), "--params", str(tmp_path / "params.yaml")]
    return [*argv, "--data", str(_mnist(tmp_path, idx_dir)), "--out", str(out)], out


@pytest.mark.slow
def test_roofline_counts_the_work_and_places_the_trainer_under_the_peak(tmp_path, idx_dir, monkeypatch):
    argv, out = _one_thread_bench(tmp_path, idx_dir, "zoo_roofline", epochs=1)
    monkeypatch.setattr(sys, "argv", [*argv, "--bare-seconds", "0.05", "--peak-seconds", "0.1"])
    module = _load("zoo_roofline")
    module.main()
    report = json.loads(out.read_text())
    s = report["summary"]
    assert report["models"] == len(report["per_model"]) == 2
    for row in report["per_model"]:
        assert row["gflop"] > 0 and row["trainer_s"] > 0 and row["bare_s"] > 0
    assert 0 < s["trainer_gflops"] <= s["bare_gflops"] * 1.5 and s["matmul_peak_gflops"] > 0
    at_peak = sum(r["gflop"] for r in report["per_model"]) / s["matmul_peak_gflops"]  # seconds at the peak
    assert s["max_gain_at_matmul_peak"] == pytest.approx(
        sum(r["trainer_s"] for r in report["per_model"]) / at_peak, rel=0.05
    )
    assert "GFLOP" in module.render(report, str(out))


def test_roofline_flop_count_of_a_linear_layer_is_six_per_weight_per_image():
    """Forward 2, backward 4 FLOPs per weight per image: a check of the counter the benchmark relies on."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    layer = torch.nn.Linear(50, 10, bias=False)
    x = torch.randn(8, 50, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        layer(x).sum().backward()
    assert counter.get_total_flops() == 6 * 50 * 10 * 8


@pytest.mark.slow
def test_zoo_throughput_trains_the_same_models_with_every_method(tmp_path, idx_dir, monkeypatch, capsys):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(idx_dir)))
    out = tmp_path / "throughput.json"
    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")  # each method's child trains in its own process: no pool to start
    argv = ["zoo_throughput.py", "--models", "2", "--epochs", "1", "--pool", "100"]
    argv += ["--params", str(tmp_path / "params.yaml"), "--data", str(_mnist(tmp_path, idx_dir))]
    monkeypatch.setattr(sys, "argv", [*argv, "--methods", "reference,loop,fused", "--out", str(out)])
    module = _load("zoo_throughput")
    module.main()
    report = json.loads(out.read_text())
    assert (report["models"], report["epochs"], report["pool_size"]) == (2, 1, 100)
    assert report["regime"] == "overridden on the command line" and sum(report["fused_groups"]) == 2
    ids = {str(s.model_id) for s in module.pick_specs(str(tmp_path / "params.yaml"), 2, 1)}
    rows = report["methods"]
    assert [r["method"] for r in rows] == ["reference", "loop", "fused"] and len(ids) == 2
    for r in rows:
        accs = list(r["test_acc"].values())
        assert set(r["test_acc"]) == ids and all(0 <= a <= 100 for a in accs)
        assert r["mean_test_acc"] == pytest.approx(np.mean(accs), abs=0.006)
        assert r["wall_s"] >= 0 and r["cpu_s"] > 0 and r["peak_rss_mib"] > 0
        assert r["model_epochs_per_core_hour"] > 0 and r["ratio_to_reference"] > 0
        assert r["acc_gap_to_reference"] == pytest.approx(r["mean_test_acc"] - rows[0]["mean_test_acc"], abs=0.011)
        d = r["paired_diff"]
        assert 0 <= d["models_within_1_point"] <= 2 and d["max_abs"] >= abs(d["mean"]) - 0.01
    assert rows[0]["ratio_to_reference"] == 1.0
    assert rows[0]["paired_diff"] == {"mean": 0.0, "sem": 0.0, "models_within_1_point": 2, "max_abs": 0.0}
    assert report["quality_ok"] == all(abs(r["acc_gap_to_reference"]) <= report["quality_within_points"] for r in rows)
    assert "2 models of" in capsys.readouterr().out
    table = module.render(report, str(out))
    assert all(f"| `{m}` |" in table for m in ("reference", "loop", "fused")) and "2 models of" in table


@pytest.mark.slow
def test_zoo_regimes_tabulates_accuracy_and_cost_of_each_regime(tmp_path, idx_dir, monkeypatch):
    from kennen.attributes import SAMPLED

    out = tmp_path / "regimes.json"
    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")
    argv = ["--configs", "4", "--epochs", "1", "2", "--pool", "300", "--baseline-pool", "150"]
    assert _load("zoo_regimes").main([*argv, "--data", str(_mnist(tmp_path, idx_dir)), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    table = report["regimes"]
    assert [(t["pool"], t["epochs"]) for t in table] == [(150, 1), (300, 1), (300, 2)]
    base = table[0]["core_seconds_per_model"]
    assert table[0]["cost_ratio"] == 1.0 and base > 0
    for t in table:
        assert t["models"] == 4 and 0 <= t["dead"] <= 4
        assert 0 <= t["acc_q25"] <= t["acc_median"] <= t["acc_q75"] <= 100 and 0 <= t["acc_mean"] <= 100
        assert 0 <= t["share_98"] <= t["share_95"] <= 100
        assert t["cost_ratio"] == pytest.approx(t["core_seconds_per_model"] / base, rel=0.15)
    models = report["models"]
    assert sorted((m["config"]["model_id"], m["pool"]) for m in models) == [
        (i, p) for i in range(4) for p in (150, 300)
    ]
    for m in models:
        assert [c["epoch"] for c in m["curve"]] == ([1, 2] if m["pool"] == 300 else [1])
        assert all(0 <= c["acc"] <= 100 and c["core_seconds"] > 0 for c in m["curve"])
    configs = [m["config"] for m in models if m["pool"] == 300]
    for attr in SAMPLED:  # balanced: every value as often as 4 configurations allow
        counts = [sum(c[attr.key] == v for c in configs) for v in attr.values]
        assert max(counts) - min(counts) <= 1
    by_value = report["median_by_value"]
    assert set(by_value) == {f"{e}.{a.key}={v}" for e in (1, 2) for a in SAMPLED for v in a.values}
    for e in (1, 2):
        for attr in SAMPLED:
            for v in attr.values:
                accs = [m["curve"][e - 1]["acc"] for m in models if m["pool"] == 300 and m["config"][attr.key] == v]
                want = round(float(np.median(accs)), 2) if accs else None
                assert by_value[f"{e}.{attr.key}={v}"] == want


def test_zoo_regimes_without_the_data_says_so(tmp_path, capsys):
    out = tmp_path / "regimes.json"
    assert _load("zoo_regimes").main(["--data", str(tmp_path / "absent.npz"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_zoo_forward_times_three_ways_that_compute_the_same(tiny_pipeline, tmp_path, monkeypatch, capsys):
    import copy

    import torch

    from kennen.queries import read_boxes
    from kennen.zoo.forward import ZooForward
    from kennen.zoo.prune import read_kept

    out = tmp_path / "forward.json"
    monkeypatch.setattr(sys, "argv", ["zoo_forward.py", "--repeats", "1", "--out", str(out)])
    module = _load("zoo_forward")
    threads = torch.get_num_threads()
    try:
        with chdir(tiny_pipeline):
            module.main()
            nets = module.load_nets(Path("."))
    finally:
        torch.set_num_threads(threads)  # main runs single-threaded
    kept = read_kept(tiny_pipeline / "data/zoo/kept.json")
    n_boxes = len(read_boxes(tiny_pipeline / "data/queries/boxes.csv"))
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"{len(kept)} networks in ") and first.endswith(f"; {n_boxes} boxes")
    cases = json.loads(out.read_text())["cases"]
    assert [c["case"] for c in cases] == [name for name, _, _ in module.CASES]
    for case, (_, _, n_nets) in zip(cases, module.CASES, strict=True):
        assert case["networks"] == min(n_nets or len(kept), len(kept))
        assert case["plain_loop_ms_per_network"] > 0 and case["channels_last_loop_ms_per_network"] > 0
        assert case["grouped_ms_per_network"] > 0
        assert case["speedup_channels_last_loop"] > 0 and case["speedup_grouped"] > 0
    # what the docstring promises and the timings take for granted: the three give the same log-probabilities
    x = torch.from_numpy(mnist_data.normalise(mnist_data.load(tiny_pipeline / "data/mnist.npz").test_images[:12]))
    assert len(nets) == len(kept)
    with torch.no_grad():
        plain = torch.stack([net(x) for net in nets])
        for strategy in ("loop", "grouped"):
            got = ZooForward(copy.deepcopy(nets), strategy)(x, torch.arange(len(nets)))
            assert torch.allclose(got, plain, atol=1e-4), strategy


@pytest.mark.slow
def test_metamodel_speed_compares_the_old_and_new_paths_point_by_point(tiny_pipeline, tmp_path, monkeypatch, capsys):
    import torch

    from kennen.splits import read_split

    out = tmp_path / "speed.json"
    other = {"val_fraction": 0.5, "patience": 1, "min_val": 1}
    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")
    argv = ["metamodel_speed.py", "--quick", "--baseline-threads", "1", "--params", str(tiny_pipeline / "params.yaml")]
    for flag, path in (("outputs", "queries/outputs.npz"), ("boxes", "queries/boxes.csv"), ("splits", "splits")):
        argv += [f"--{flag}", str(tiny_pipeline / "data" / path)]
    argv += ["--early-stop", json.dumps(EARLY_STOP), "--early-stop", json.dumps(other), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    threads = torch.get_num_threads()
    try:
        _load("metamodel_speed").main()
    finally:
        torch.set_num_threads(threads)  # the baseline sets its own thread count
    report = json.loads(out.read_text())
    r = read_split(tiny_pipeline / "data/splits", "r")
    assert (report["n_train_boxes"], report["n_test_boxes"]) == (len(r["train"]), len(r["test"]))
    base = report["baseline"]
    assert base["threads"] == 1 and base["box_epochs"] > 0 and base["cpu_s"] >= 0
    variants = [report["new"], *report["variants"]]
    assert [{k: v["early_stop"][k] for k in EARLY_STOP} for v in variants] == [EARLY_STOP, other]
    assert report["speedup"] == report["new"]["speedup"]
    printed = capsys.readouterr().out
    for v in variants:
        points = v["points"]
        assert [(q["stage"], q["point"]) for q in points] == [
            ("kennen_o", "default"),
            ("kennen_o", "official"),
            ("output", "prob"),
            ("output", "top1"),
        ]
        for q in points:
            for side in ("baseline", "new"):
                # 0.01: the point is the mean of rounded accuracies, its interval's ends are not
                assert 0 <= q[f"{side}_low"] - 0.01 <= q[side] <= q[f"{side}_high"] + 0.01 <= 100.01
            assert q["diff"] == pytest.approx(q["new"] - q["baseline"], abs=0.016)  # same test boxes, same order
            assert q["beyond_noise"] == (q["diff_low"] > 0 or q["diff_high"] < 0)
        new = {(q["stage"], q["point"]): q["new"] for q in points}
        assert new["output", "prob"] == new["kennen_o", "default"]  # the new path reads it from the headline
        assert len(v["headline_seeds_acc_mean"]) == v["seeds"] == 3
        assert v["headline_seeds_acc_mean"][0] == new["kennen_o", "default"]
        assert v["box_epochs"] > 0 and v["speedup"] > 0 and v["cpu_ratio"] > 0 and v["work_ratio"] > 0
        assert not {k for k in v if k.startswith("_")}  # the private keys are popped before writing
        assert v["acc_mean_over_points"] == pytest.approx(np.mean(list(new.values())), abs=0.006)
        assert v["points_beyond_noise"] == sum(q["beyond_noise"] for q in points)
        assert f"{v['points_beyond_noise']} of 4 points beyond noise" in printed
    assert base["acc_mean_over_points"] == pytest.approx(np.mean([q["baseline"] for q in points]), abs=0.006)


@pytest.mark.slow
def test_whiten_demo_scores_fresh_boxes_against_their_truth(tiny_pipeline, tmp_path, monkeypatch, capsys):
    """Two fresh boxes whitened with metamodels trained by the tiny pipeline's kennen_o and kennen_i stages; the
    printed accuracies checked against the truth it writes and the boxes it saves, whitened again here."""
    from kennen.attributes import ATTRIBUTES, parse_value
    from kennen.io import read_csv
    from kennen.whiten import load_target, whiten

    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")
    for stage in ("kennen_o", "kennen_i"):
        assert run_stage(tiny_pipeline, stage) == 0, stage
    # the demo runs the `kennen` console script of this environment
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    demo = tmp_path / "demo"
    monkeypatch.setattr(sys, "argv", ["whiten_demo.py", "--boxes", "2", "--out", str(demo)])
    capsys.readouterr()
    with chdir(tiny_pipeline):
        _load("whiten_demo", "scripts").main()
    out = capsys.readouterr().out
    truth = read_csv(demo / "truth.csv")
    assert [t["box"] for t in truth] == ["box0.pt2", "box1.pt2"] and all((demo / t["box"]).is_file() for t in truth)
    assert all(0 <= float(t["test_acc"]) <= 100 for t in truth)
    assert out.startswith(f"$ kennen whiten {demo / 'box0.pt2'} --output-type logprob\n")
    assert f"target: {demo / 'box0.pt2'}" in out and "metamodel: kennen-o on logprob outputs" in out
    pattern = r"^(\w+) \(([\w-]+)\) over (\d+) fresh boxes: mean accuracy ([\d.]+)% \(chance ([\d.]+)%\); (.+); "
    summary = re.findall(pattern + r"answered (\d+)% of attributes, of those (.+)$", out, re.MULTILINE)
    assert [s[:3] for s in summary] == [("scores", "kennen-o", "2"), ("labels", "kennen-i", "2")]

    # the same boxes whitened here, scored against the truth file
    models = tiny_pipeline / "models"
    reports = {"scores": [], "labels": []}
    for t in truth:
        path = str(demo / t["box"])
        box = load_target(path)
        reports["scores"].append(whiten(box, path, "logprob", models_dir=models).as_dict())
        labels = whiten(lambda x, box=box: np.asarray(box(x)).argmax(1), path, "label", models_dir=models)
        reports["labels"].append(labels.as_dict())
    chance = np.mean([a.chance for a in ATTRIBUTES])
    for (kind, _, _, mean, chance_text, per, answered, _), runs in zip(summary, reports.values(), strict=True):
        assert float(chance_text) == pytest.approx(chance, abs=0.05)
        printed = {k: float(v.rstrip("%")) for k, v in (item.split() for item in per.split(", "))}
        want = {}
        for a in ATTRIBUTES:
            right = [
                next(f for f in rep["attributes"] if f["attribute"] == a.key)["best_guess"]
                == a.labels[a.index(parse_value(a.key, t[a.key]))]
                for rep, t in zip(runs, truth, strict=True)
            ]
            want[a.key] = 100 * np.mean(right)
        assert printed == {k: round(v) for k, v in want.items()}, kind
        assert float(mean) == pytest.approx(np.mean(list(want.values())), abs=0.051)
        flags = [f["answered"] for rep in runs for f in rep["attributes"]]
        assert int(answered) == round(100 * np.mean(flags))


@pytest.mark.slow
def test_precision_benchmark_trains_the_same_models_in_both_precisions(tmp_path, idx_dir, monkeypatch):
    argv, out = _one_thread_bench(tmp_path, idx_dir, "zoo_precision", epochs=2)
    monkeypatch.setattr(sys, "argv", argv)
    module = _load("zoo_precision")
    module.main()
    report = json.loads(out.read_text())
    rows, s = report["per_model"], report["summary"]
    assert report["models"] == len(rows) == 2 and s["speedup"] > 0
    for r in rows:
        assert r["float32_s"] > 0 and r["bfloat16_s"] > 0
        assert 0 <= r["float32_acc"] <= 100 and 0 <= r["bfloat16_acc"] <= 100
    diffs = [r["bfloat16_acc"] - r["float32_acc"] for r in rows]
    assert s["paired_diff_mean"] == pytest.approx(sum(diffs) / 2, abs=0.01)
    assert "bfloat16 autocast" in module.render(report, str(out))


def test_bfloat16_autocast_without_its_weight_cache_follows_the_updated_weights():
    """The trap the precision benchmark avoids: one autocast context around a whole training with the default
    weight cache keeps computing with the first step's bfloat16 weights."""
    import torch

    layer = torch.nn.Linear(4, 1, bias=False)
    x = torch.ones(1, 4)
    for cache, expect_change in ((True, False), (False, True)):
        with torch.no_grad():
            layer.weight.fill_(1.0)
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=cache):
            before = layer(x).float().item()
            with torch.no_grad():
                layer.weight.fill_(2.0)
            after = layer(x).float().item()
        assert (after != before) is expect_change
