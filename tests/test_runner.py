"""The metamodel runner (``kennen.metamodel.runner``): what it writes for every metamodel, E-split rows, task order."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kennen.attributes import ATTRIBUTES, KEYS
from kennen.io import read_csv
from kennen.metamodel import runner
from kennen.metamodel.calibration import Calibrated, CalibrationParams
from kennen.metamodel.runner import OUTPUTS, Outputs, Report, e_split_rows, finish, train_tasks, write_live


def _calibrated() -> Calibrated:
    metrics = {"ece_before": 0.2, "ece_after": 0.1, "abstain.coverage": 50.0, "abstain.accuracy": 90.0,
               "ood.test_rate": 1.0}  # fmt: skip
    rows = [{"calibration": label, "bin": 0.55, "confidence": 0.5, "accuracy": 0.6, "count": 3}
            for label in ("m before", "m after")]  # fmt: skip
    return Calibrated(metrics, rows, [{"coverage": 100.0, "risk": 10.0}], 0.5, 1.5, {"calibration.t": torch.ones(2)})


def _report(tmp_path) -> Report:
    y = np.zeros((4, len(ATTRIBUTES)), dtype=np.int64)
    data = tmp_path / "data.bin"
    data.write_bytes(b"zoo")
    return Report(
        method="kennen-x", metrics={"acc.mean": 50.0}, y_true=y, y_pred=y, confusion_title="kennen-x",
        calibration=_calibrated(), calibration_method="temperature", n_val=3,
        curve=[{"train/loss": 2.0, "val/acc_mean": 40.0}, {"train/loss": 1.0}],
        tensors={"mlp.w": torch.zeros(3)}, meta={"method": "kennen-x", "hidden": 8}, test_accuracy={"acc.mean": 50.0},
        inputs=[data], n_train=6, n_test=4, tables={"settings": [{"setting": "a", "mean": 1.0}]},
    )  # fmt: skip


@pytest.mark.slow
def test_finish_writes_every_output_of_a_metamodel_stage(tmp_path):
    a = argparse.Namespace(**{name: str(tmp_path / name) for name in OUTPUTS})
    out = Outputs.of(a)
    assert out.model == tmp_path / "model"
    params = {"seed": 7, "sample_zoo": {"n_models": 8}}
    finish(_report(tmp_path), out, params, CalibrationParams())
    assert json.loads(out.metrics.read_text()) == {"acc.mean": 50.0}
    assert json.loads(out.headline.read_text()) == {}  # no cross-validated block in this report
    assert read_csv(out.plots / "settings.csv") == [{"setting": "a", "mean": "1.0"}]
    assert {p.stem for p in (out.plots / "confusion").iterdir()} == set(KEYS)
    for name in ("reliability.csv", "risk_coverage.csv"):
        assert (out.plots / name).is_file()
    for name in ("reliability.png", "confusion.png"):
        assert (out.figures / name).stat().st_size > 1000
    assert (out.live / "plots/metrics/train/loss.tsv").read_text().splitlines() == ["step\tloss", "0\t2.0", "1\t1.0"]
    meta = json.loads((tmp_path / "model.json").read_text())
    # the method's entries first, then what every metamodel carries, in this order
    assert list(meta) == ["method", "hidden", "zoo", "test_accuracy", "provenance", "calibration", "ood"]
    assert meta["zoo"]["seed"] == 7 and meta["zoo"]["n_train_boxes"] == 6 and meta["zoo"]["n_test_boxes"] == 4
    assert meta["calibration"]["method"] == "temperature" and len(meta["provenance"]["data_sha256"]) == 64
    assert set(load_file(str(tmp_path / "model.safetensors"))) == {"mlp.w", "calibration.t"}


def test_write_live_logs_each_steps_metrics_at_that_step(tmp_path):
    write_live(tmp_path, [{"a": 1.0, "b": 5.0}, {"a": 2.0}, {"a": 3.0, "b": 6.0}])
    assert (tmp_path / "plots/metrics/a.tsv").read_text().splitlines()[1:] == ["0\t1.0", "1\t2.0", "2\t3.0"]
    assert (tmp_path / "plots/metrics/b.tsv").read_text().splitlines()[1:] == ["0\t5.0", "2\t6.0"]


def test_e_split_rows_fill_unrunnable_splits_with_nan_and_skip_r():
    splits = {
        "r": {"train": [0], "test": [1]},
        "e_a": {"train": [0, 1], "test": [2]},
        "e_b": {"train": [0], "test": []},
    }
    row = {"split": "e_a", "relative": 80.0, "acc_mean": 40.0, "acc_mean_low": 30.0, "acc_mean_high": 50.0}
    rows, metrics = e_split_rows(["r", "e_a", "e_b"], splits, {"e_a": {}}, lambda name: row)
    assert [r["split"] for r in rows] == ["e_a", "e_b"] and rows[0] is row
    assert metrics == {"e_a.relative": 80.0, "e_a.acc_mean": 40.0, "e_a.acc_mean_low": 30.0, "e_a.acc_mean_high": 50.0}
    assert rows[1]["n_train"] == 1 and rows[1]["n_test"] == 0 and math.isnan(rows[1]["relative"])


def _square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("executor", ["serial", "process"])
@pytest.mark.slow
def test_train_tasks_keys_results_by_task(monkeypatch, caplog, executor):
    monkeypatch.setenv("KENNEN_EXECUTOR", executor)
    caplog.set_level("INFO", logger="kennen")
    done = train_tasks(_square, [3, 1, 2], lambda t, r: f"task {t} -> {r}", desc="squares")
    assert done == {3: 9, 1: 1, 2: 4}
    assert {"task 3 -> 9", "task 1 -> 1", "task 2 -> 4"} <= {r.getMessage() for r in caplog.records}


def test_metrics_lead_with_the_headline():
    metrics = {"acc.mean": 1.0, "cv.n_boxes": 9, "cv.acc.mean_high": 3.0, "seconds": 4.0, "cv.acc.mean": 2.0}
    metrics |= {"cv.acc_config.mean_low": 1.0, "cv.acc_config.mean": 2.0, "cv.acc.mean_low": 1.0}
    metrics |= {"cv.acc_config.mean_high": 3.0}
    assert list(runner.headline_first(metrics)) == [
        *runner.HEADLINE,
        "cv.n_boxes",
        "acc.mean",
        "seconds",
    ]
    assert runner.headline(metrics) == {k: metrics[k] for k in (*runner.HEADLINE, "cv.n_boxes")}
