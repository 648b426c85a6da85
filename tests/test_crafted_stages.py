"""Smoke tests of the ``kennen_i`` and ``kennen_io`` stages: their ``main`` on a tiny zoo built by the real stages.

The upstream stages run in-process with the tiny params of ``conftest.py``, from the commands in
``dvc.yaml`` (so the paths are the pipeline's), in a temporary folder; a few seconds on a CPU. Each
stage's tasks are recorded as they run, to check that no fold trains on a configuration it tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from kennen.attributes import KEYS
from kennen.config import section
from kennen.io import read_csv
from kennen.metamodel import kennen_io, run_kennen_i, run_kennen_io
from kennen.metamodel.crafted import ALL_BOXES, fold_name
from kennen.metamodel.cv import units_of
from kennen.metamodel.kennen_io import KennenIOParams
from kennen.metamodel.runs import read_predictions
from kennen.queries import read_boxes
from kennen.splits import read_folds
from kennen.stats import accuracies
from tests.conftest import run_stage, tiny_copy


@pytest.fixture(scope="module")
def tiny_zoo(tiny_upstream, tmp_path_factory):
    return tiny_copy(tiny_upstream, tmp_path_factory, "crafted_stages")


@pytest.fixture
def serial(monkeypatch):
    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")


def _record_tasks(monkeypatch, module) -> list[tuple[tuple, dict[str, list[int]]]]:
    """Wrap ``module.run_task`` so that every task's (task, split) is kept (the serial executor runs in-process)."""
    seen: list[tuple[tuple, dict[str, list[int]]]] = []
    original = module.run_task

    def recording(task, **kw):
        name = task[0] if module is run_kennen_io else task[1]
        seen.append((task, kw["splits"][name]))
        return original(task, **kw)

    monkeypatch.setattr(module, "run_task", recording)
    return seen


def _assert_cross_validated(root: Path, stage: str, m: dict, seen: list) -> None:
    """The cv block: every box once, counts of boxes and configurations, intervals around the points, and tasks
    whose training boxes never share a configuration with their test boxes; the saved model trained on all."""
    boxes = read_boxes(root / "data/queries/boxes.csv")
    folds = read_folds(root / "data/splits", boxes)
    config = {b["box"]: b["config"] for b in boxes}
    assert m["cv.k"] == len(folds) == 5
    assert m["cv.n_boxes"] == len(boxes) and m["cv.n_configs"] == len(set(config.values()))
    for kind in ("acc", "acc_config"):
        for k in (*KEYS, "mean"):
            assert m[f"cv.{kind}.{k}_low"] <= m[f"cv.{kind}.{k}"] <= m[f"cv.{kind}.{k}_high"]
    splits = {}
    for task, split in seen:
        splits.setdefault(task[0] if stage == "kennen_io" else task[1], split)
        assert not {config[b] for b in split["train"]} & {config[b] for b in split["test"]}, task
    for f, fold in enumerate(folds):
        assert sorted(splits[fold_name(f)]["test"]) == sorted(fold)
        assert sorted(splits[fold_name(f)]["train"] + fold) == sorted(config)
    assert sorted(splits[ALL_BOXES]["train"]) == sorted(config) and not splits[ALL_BOXES]["test"]
    ids, y_true, y_pred = read_predictions(root / f"reports/plots/{stage}/cv_predictions.csv")
    assert ids == [b["box"] for b in boxes]
    units = units_of(boxes)
    assert accuracies(y_true, y_pred)["mean"] == m["cv.acc.mean"]
    assert accuracies(y_true, y_pred, units=units, per_config=True)["mean"] == m["cv.acc_config.mean"]
    meta = json.loads((root / f"models/{stage}.json").read_text())
    assert meta["test_accuracy"]["acc.mean"] == m["cv.acc.mean"]  # what whiten shows: the cross-validated figure
    assert meta["trained_on"].startswith(f"all {len(boxes)} boxes")
    assert list(m)[0].startswith("cv.")  # the headline leads the metrics


@pytest.mark.slow
def test_kennen_io_stage(tiny_zoo, serial, monkeypatch):
    seen = _record_tasks(monkeypatch, run_kennen_io)
    assert run_stage(tiny_zoo, "kennen_io") == 0
    m = json.loads((tiny_zoo / "reports/metrics/kennen_io.json").read_text())
    _assert_cross_validated(tiny_zoo, "kennen_io", m, seen)
    for kind in ("acc", "acc_config"):
        gap = m[f"cv.gap_vs_o.{kind}.diff"]
        assert m[f"cv.gap_vs_o.{kind}.low"] <= gap <= m[f"cv.gap_vs_o.{kind}.high"]
        assert gap == pytest.approx(m[f"cv.{kind}.mean"] - m[f"cv.o.{kind}.mean"], abs=1e-6)
        assert m[f"cv.o.{kind}.mean_low"] <= m[f"cv.o.{kind}.mean"] <= m[f"cv.o.{kind}.mean_high"]
    assert m["cv.queries.moved"] > 0
    # every fold, the all-box model, R and the E split this zoo can fill, submitted the longest first
    names = [task[0] for task, _ in seen]
    assert sorted(names) == sorted([ALL_BOXES, "e_size", "r", *map(fold_name, range(5))])
    kp = section(KennenIOParams, yaml.safe_load((tiny_zoo / "params.yaml").read_text()), "kennen_io")
    costs = [kennen_io.cost(kp, task[0], len(split["train"])) for task, split in seen]
    assert costs == sorted(costs, reverse=True) and names[0] == ALL_BOXES
    # the R split's row, as the paper reports it
    for k in (*KEYS, "mean"):
        assert m[f"acc.{k}_low"] <= m[f"acc.{k}"] <= m[f"acc.{k}_high"]
    assert m["gap_vs_o.low"] <= m["gap_vs_o.diff"] <= m["gap_vs_o.high"]
    assert m["gap_vs_o.diff"] == pytest.approx(m["acc.mean"] - m["gap_vs_o.o_mean"], abs=1e-6)
    assert m["queries.moved"] > 0 and m["query_phase1.moved"] > 0
    phases = read_csv(tiny_zoo / "reports/plots/kennen_io/phases.csv")
    for split in ("r", ALL_BOXES, fold_name(0)):
        assert [p["train"] for p in phases if p["split"] == split] == ["metamodel", "queries", "metamodel"]
    meta = json.loads((tiny_zoo / "models/kennen_io.json").read_text())
    assert meta["query_boxes"] == 4
    assert load_file(str(tiny_zoo / "models/kennen_io.safetensors"))["queries"].shape == (5, 1, 28, 28)
    _assert_calibrated(tiny_zoo, "kennen_io", m, meta)


def _assert_calibrated(root: Path, stage: str, m: dict, meta: dict) -> None:
    """A crafted stage's calibration: fitted on every box's out-of-fold answers, written where whiten reads it."""
    for key in ("ece_before", "ece_after"):
        assert 0 <= m[f"{key}_low"] <= m[key] <= m[f"{key}_high"] <= 1
    assert m["calibration.n_val"] == m["cv.n_boxes"]
    assert len(read_csv(root / f"reports/plots/{stage}/risk_coverage.csv")) == 20
    assert read_csv(root / f"reports/plots/{stage}/reliability.csv")
    assert (root / f"reports/figures/{stage}/reliability.png").is_file()
    tensors = load_file(str(root / f"models/{stage}.safetensors"))
    assert tensors["ood.reference"].shape[0] == m["cv.n_boxes"]  # every box: the saved model's training boxes
    assert meta["calibration"]["min_confidence"] == m["abstain.min_confidence"] and "threshold" in meta["ood"]
    assert "out-of-fold" in meta["calibration"]["fitted_on"]
    assert len(meta["provenance"]["data_sha256"]) == 64


@pytest.mark.slow
def test_kennen_io_stage_with_two_seeds(tiny_zoo, serial, tmp_path):
    params = yaml.safe_load((tiny_zoo / "params.yaml").read_text())
    params["kennen_io"]["seeds"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    metrics = tmp_path / "kennen_io.json"
    assert run_stage(tiny_zoo, "kennen_io", "--params", str(tmp_path / "params.yaml"), "--metrics", str(metrics)) == 0
    m = json.loads(metrics.read_text())
    assert m["seeds.n"] == 2 and m["seeds.acc.mean_low"] <= m["seeds.acc.mean"] <= m["seeds.acc.mean_high"]
    assert {"seeds.gap_vs_o.diff", "seeds.gap_vs_o.diff_sd"} <= set(m)


@pytest.mark.slow
def test_kennen_i_stage(tiny_zoo, serial, monkeypatch):
    seen = _record_tasks(monkeypatch, run_kennen_i)
    assert run_stage(tiny_zoo, "kennen_i") == 0
    m = json.loads((tiny_zoo / "reports/metrics/kennen_i.json").read_text())
    _assert_cross_validated(tiny_zoo, "kennen_i", m, seen)
    assert {(t, s) for (t, s), _ in seen} == {
        (t, s) for t in ("each", "all") for s in ("r", ALL_BOXES, *map(fold_name, range(5)))
    }
    assert seen[0][0] == ("each", ALL_BOXES)  # the longest first: 12 images on every box
    for target in ("each", "all"):
        for kind in ("acc", "acc_config"):
            mean = m[f"cv.{target}.{kind}.mean"]
            assert m[f"cv.{target}.{kind}.mean_low"] <= mean <= m[f"cv.{target}.{kind}.mean_high"]
        assert m[f"{target}.acc.mean_low"] <= m[f"{target}.acc.mean"] <= m[f"{target}.acc.mean_high"]
    assert m["cv.each.acc.mean"] == m["cv.acc.mean"] and 0 <= m["cv.in_range"] <= 100
    for k in (*KEYS, "mean"):  # the R split's row, which the defences stage reads
        assert m[f"acc.{k}_low"] <= m[f"acc.{k}"] <= m[f"acc.{k}_high"]
    r = json.loads((tiny_zoo / "data/splits/r.json").read_text())
    assert m["n_test"] == len(r["test"]) and m["n_train"] == len(r["train"])
    table = read_csv(tiny_zoo / "reports/plots/kennen_i/targets.csv")
    assert {"mean", "mean_low", "mean_high", "cv_acc_mean", "cv_acc_config_mean_high"} <= set(table[0])
    assert "act_low" not in table[0] and float(table[0]["cv_acc_mean"]) == m["cv.acc.mean"]
    meta = json.loads((tiny_zoo / "models/kennen_i.json").read_text())
    _assert_calibrated(tiny_zoo, "kennen_i", m, meta)
    # uncalibrated, kennen-i answers with certainty: its ECE is the share of answers that are wrong
    assert m["ece_before"] == pytest.approx(1 - m["abstain.accuracy_all"] / 100, abs=1e-3)
    tensors = load_file(str(tiny_zoo / "models/kennen_i.safetensors"))
    assert tensors["calibration.table"].shape == (12, 10) and tensors["queries.each"].shape == (12, 1, 28, 28)
