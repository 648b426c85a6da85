"""Smoke tests of the ``kennen_o`` and ``kennen_o_sweep`` stages: their ``main`` on a tiny zoo built by the real stages.

The upstream stages run in-process with the tiny params of ``conftest.py`` (plus early
stopping that a tiny zoo can carve), from the commands in ``dvc.yaml``, in a temporary folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from kennen.attributes import KEYS
from kennen.io import read_csv
from kennen.metamodel.kennen_o import accuracies
from kennen.metamodel.runs import read_predictions
from tests.conftest import REPO, tiny_copy
from tests.conftest import run_stage as _run_stage

SWEEPS = ("n_train", "n_queries", "output", "extrapolation")


@pytest.fixture(scope="module")
def tiny_zoo(tiny_upstream, tmp_path_factory):
    root = tiny_copy(tiny_upstream, tmp_path_factory, "kennen_o_stages")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KENNEN_EXECUTOR", "serial")
        assert _run_stage(root, "kennen_o") == 0
    return root


def test_queries_stage_writes_every_boxs_outputs_in_table_order(tiny_zoo):
    boxes = read_csv(tiny_zoo / "data/queries/boxes.csv")
    with np.load(tiny_zoo / "data/queries/outputs.npz") as z:
        outputs, query_index = z["outputs"], z["query_index"]
    assert outputs.shape == (len(boxes), 20, 10) and outputs.dtype == np.float32
    assert len(set(query_index.tolist())) == 20  # distinct test images
    assert [int(b["box"]) for b in boxes] == list(range(len(boxes)))
    kinds = [b["kind"] for b in boxes]
    assert kinds == sorted(kinds, key=["single", "ensemble"].index) and "ensemble" in kinds
    mass = np.exp(outputs).sum(-1)
    single = np.array(kinds) == "single"
    assert np.allclose(mass[single], 1, atol=1e-4)  # log-probabilities
    assert (mass[~single] <= 1 + 1e-4).all()  # an ensemble's is the mean of its members' log-probabilities (§2)


def test_kennen_o_stage_writes_intervals_seed_spread_and_predictions(tiny_zoo):
    m = json.loads((tiny_zoo / "reports/metrics/kennen_o.json").read_text())
    for k in (*KEYS, "mean"):
        assert m[f"acc.{k}_low"] <= m[f"acc.{k}"] <= m[f"acc.{k}_high"]
        assert f"seeds.acc.{k}" in m and f"seeds.acc.{k}_sd" in m
    assert m["seeds.n"] == 3 and m["seeds.acc.mean_low"] <= m["seeds.acc.mean"] <= m["seeds.acc.mean_high"]
    assert {"default.acc.mean", "official.acc.mean", "n_train", "n_test", "train.epochs", "train.n_val"} <= set(m)
    assert "final_boxes.acc.mean" in m  # the paper's recipe on the R split, beside the checkpoint-box headline
    # the saved metamodel learns from every box (its early-stopping carve included) and from the checkpoint
    # boxes of their models, less those of the configurations the carve holds out
    n_rows = m["train.n_fit"] + m["train.n_val"]
    assert m["train.n_val"] > 0 and m["cv.n_boxes"] < n_rows < m["cv.n_boxes"] + m["cv.checkpoint_boxes"]
    ids, y_true, y_pred = read_predictions(tiny_zoo / "reports/plots/kennen_o/predictions.csv")
    assert ids == json.loads((tiny_zoo / "data/splits/r.json").read_text())["test"]
    assert accuracies(y_true, y_pred) == {f"acc.{k}": m[f"acc.{k}"] for k in (*KEYS, "mean")}
    table = read_csv(tiny_zoo / "reports/plots/kennen_o/optimisers.csv")
    assert [t["setting"] for t in table] == ["default", "official", "final_boxes"]
    assert {"mean_low", "mean_high"} <= set(table[0])
    assert np.isclose(float(table[0]["mean"]), m["acc.mean"])


def test_kennen_o_stage_cross_validates_over_configurations(tiny_zoo):
    """Every box predicted once by a fold that never saw its configuration; two accuracies, intervals, baselines."""
    from kennen.metamodel.cv import units_of
    from kennen.queries import read_boxes
    from kennen.splits import read_folds
    from kennen.stats import accuracies as stats_accuracies

    m = json.loads((tiny_zoo / "reports/metrics/kennen_o.json").read_text())
    boxes = read_boxes(tiny_zoo / "data/queries/boxes.csv")
    folds = read_folds(tiny_zoo / "data/splits", boxes)
    assert m["cv.k"] == len(folds) == 5
    assert m["cv.n_boxes"] == len(boxes) and m["cv.n_configs"] == len({b["config"] for b in boxes})
    for f, fold in enumerate(folds):  # no configuration on both sides of a fold
        others = {boxes[b]["config"] for g, other in enumerate(folds) if g != f for b in other}
        assert not others & {boxes[b]["config"] for b in fold}
    for kind in ("acc", "acc_config"):
        for k in (*KEYS, "mean"):
            assert m[f"cv.{kind}.{k}_low"] <= m[f"cv.{kind}.{k}"] <= m[f"cv.{kind}.{k}_high"]
    ids, y_true, y_pred = read_predictions(tiny_zoo / "reports/plots/kennen_o/cv_predictions.csv")
    assert ids == [b["box"] for b in boxes]
    units = units_of(boxes)
    assert stats_accuracies(y_true, y_pred)["mean"] == m["cv.acc.mean"]
    assert stats_accuracies(y_true, y_pred, units=units, per_config=True)["mean"] == m["cv.acc_config.mean"]
    methods = [r["method"] for r in read_csv(tiny_zoo / "reports/plots/kennen_o/methods.csv")]
    assert methods == [
        "kennen-o (default) (with checkpoint boxes)",
        "kennen-o (official) (with checkpoint boxes)",
        "kennen-o (default; final boxes only: the paper's)",
        "logreg (baseline)",
        "knn (baseline)",
    ]
    keys = {"cv.logreg.acc_config.mean", "cv.vs_logreg.acc_config.diff", "cv.seeds.acc_config.mean_sd"}
    assert keys | {"cv.final_boxes.acc_config.mean", "cv.vs_final_boxes.acc_config.diff"} <= set(m)
    ckpt = np.load(tiny_zoo / "data/queries/checkpoints.npz")["box"]
    assert m["cv.checkpoint_boxes"] == len(ckpt) > 0
    meta = json.loads((tiny_zoo / "models/kennen_o.json").read_text())
    assert meta["test_accuracy"]["acc.mean"] == m["cv.acc.mean"]  # what whiten shows: the cross-validated figure
    assert meta["boxes"] == "checkpoints" and f"{len(ckpt)} checkpoint boxes" in meta["trained_on"]


@pytest.mark.parametrize("name", SWEEPS)
@pytest.mark.slow
def test_kennen_o_sweep_stage(tiny_zoo, monkeypatch, name):
    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")
    assert _run_stage(tiny_zoo, ("kennen_o_sweep", name)) == 0
    rows = read_csv(tiny_zoo / f"reports/plots/kennen_o/sweep_{name}.csv")
    assert rows and {"acc_mean", "acc_mean_low", "acc_mean_high"} <= set(rows[0])
    if name == "n_train":  # the learning curve with checkpoint boxes beside the paper's, on the same boxes
        assert all(float(r["checkpoints_subsets"]) == 1 and r["checkpoints_acc_config_mean"] for r in rows)
        fit = json.loads((tiny_zoo / "reports/metrics/kennen_o_sweep/n_train.json").read_text())
        assert "fit.points" in fit and "checkpoints.fit.points" in fit
    m = json.loads((tiny_zoo / "reports/metrics/kennen_o.json").read_text())
    if name == "output":  # the sweeps learn from final boxes: the headline's point on them is the paper recipe's
        assert float(next(r for r in rows if r["output"] == "prob")["acc_mean"]) == m["cv.final_boxes.acc.mean"]
    if name == "n_train":  # the checkpoint curve's point on all boxes, first subset: the headline's own
        top = max(rows, key=lambda r: float(r["n_train"]))
        assert int(top["checkpoints_subsets"]) == 1 and float(top["checkpoints_acc_mean"]) == m["cv.acc.mean"]
    fit = json.loads((tiny_zoo / f"reports/metrics/kennen_o_sweep/{name}.json").read_text())
    if name == "n_train":
        assert {"subsets", "acc_config_sd"} <= set(rows[0]) and int(rows[0]["subsets"]) == 2
        assert fit["fit.points"] == len(rows)
    else:
        assert fit == {}
    assert (tiny_zoo / f"reports/figures/kennen_o/sweep_{name}.png").is_file()


def test_kennen_o_stage_calibrates_and_whiten_uses_it(tiny_zoo):
    """The stage's calibration (metrics, plots, tensors) and what ``whiten`` makes of it on two boxes."""
    from safetensors.torch import load_file

    from kennen.queries import load_outputs
    from kennen.whiten import whiten

    m = json.loads((tiny_zoo / "reports/metrics/kennen_o.json").read_text())
    for key in ("ece_before", "ece_after"):
        assert 0 <= m[f"{key}_low"] <= m[key] <= m[f"{key}_high"] <= 1
    assert m["calibration.n_val"] == m["cv.n_boxes"]  # fitted on every box's out-of-fold prediction
    assert 0 <= m["abstain.min_confidence"] <= 0.95 and 0 <= m["abstain.coverage"] <= 100
    rel = read_csv(tiny_zoo / "reports/plots/kennen_o/reliability.csv")
    assert {r["calibration"] for r in rel} == {"kennen-o before", "kennen-o after"}
    assert len(read_csv(tiny_zoo / "reports/plots/kennen_o/risk_coverage.csv")) == 20
    assert (tiny_zoo / "reports/figures/kennen_o/reliability.png").stat().st_size > 0
    tensors = load_file(str(tiny_zoo / "models/kennen_o.safetensors"))
    assert tensors["calibration.temperature"].shape == (12,)
    assert tensors["ood.reference"].shape[0] == m["cv.n_boxes"]
    meta = json.loads((tiny_zoo / "models/kennen_o.json").read_text())
    assert meta["calibration"]["min_confidence"] == m["abstain.min_confidence"]
    assert len(meta["provenance"]["data_sha256"]) == 64

    outputs, _ = load_outputs(tiny_zoo / "data/queries/outputs.npz")
    train_box = json.loads((tiny_zoo / "data/splits/r.json").read_text())["train"][0]
    n = meta["n_queries"]
    models = tiny_zoo / "models"

    def zoo_box(images):  # a training box itself: its stored answers to the metamodel's queries
        return outputs[train_box, :n]

    report = whiten(zoo_box, "zoo box", "logprob", "kennen-o", models)
    assert report.ood is not None and not report.ood.outside and report.ood.distance == pytest.approx(0, abs=1e-4)
    temps = tensors["calibration.temperature"].numpy()
    for f, t in zip(report.findings, temps, strict=True):
        assert f.answered == (f.probability >= report.min_confidence)
        assert (f.value == f.best_guess) if f.answered else f.value == "unknown"
        if t > 1:  # a temperature above 1 lowers the top probability
            assert f.probability <= f.raw_probability + 1e-9
    assert all(f.answered for f in whiten(zoo_box, "z", "logprob", "kennen-o", models, min_confidence=0).findings)
    assert not any(f.answered for f in whiten(zoo_box, "z", "logprob", "kennen-o", models, min_confidence=1).findings)
    doc = json.loads(json.dumps(report.as_dict()))
    assert (
        doc["out_of_zoo"]["outside"] is False and doc["provenance"]["data_sha256"] == meta["provenance"]["data_sha256"]
    )
    assert {"probability", "answered", "held_out_low", "held_out_high"} <= set(doc["attributes"][0])
    assert "within the zoo" in report.table() and "calibrated probabilities" in report.table()

    def strange_box(images):  # answers no classifier of the zoo gives: the same confident digit for everything
        out = np.full((len(images), 10), np.log(1e-6), dtype=np.float32)
        out[:, 7] = np.log(1 - 9e-6)
        return out

    far = whiten(strange_box, "strange box", "logprob", "kennen-o", models)
    assert far.ood.outside and "OUT OF THE ZOO" in far.table()


@pytest.mark.slow
def test_defences_stage_writes_every_setting_both_attackers_and_the_ladder(tiny_zoo, monkeypatch):
    """The ``defences`` stage on the tiny zoo: utility, non-adaptive and adaptive kennen-o with intervals per
    setting, the white-box and kennen-i rows, the plot data and the figure."""
    from kennen.metamodel.ladder import DefencesParams

    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")
    assert _run_stage(tiny_zoo, "kennen_i") == 0
    assert _run_stage(tiny_zoo, "defences") == 0
    m = json.loads((tiny_zoo / "reports/metrics/defences.json").read_text())
    listed = yaml.safe_load((tiny_zoo / "params.yaml").read_text())["defences"]["settings"]
    assert list(m["settings"]) == ["none", *[str(d) for d in DefencesParams(tuple(listed)).defences()[1:]]]
    n_boxes = len(read_csv(tiny_zoo / "data/queries/boxes.csv"))
    assert m["n_settings"] == len(listed) + 1 and m["n_boxes"] == n_boxes and m["n_folds"] == 5
    for name, s in m["settings"].items():
        assert {"agreement", "acc_change", "kl"} == set(s["utility"]), name
        for attacker in ("nonadaptive", "adaptive"):
            a = s[attacker]
            assert a["mean_low"] <= a["mean"] <= a["mean_high"] and set(KEYS) <= set(a), (name, attacker)
        gap = s["adaptive_vs_none"]  # paired over the same configurations
        assert gap["low"] <= gap["diff"] <= gap["high"] or gap["low"] == gap["high"], name
    clean = m["settings"]["none"]
    assert clean["utility"] == {"agreement": 100.0, "acc_change": 0.0, "kl": 0.0}
    assert clean["adaptive"] == clean["nonadaptive"]  # no defence: one attacker
    assert m["settings"]["label"]["utility"]["agreement"] == 100.0  # the label is the box's own
    assert m["settings"]["topk:1"]["utility"]["agreement"] == 100.0
    kennen_i = json.loads((tiny_zoo / "reports/metrics/kennen_i.json").read_text())
    assert m["label_kennen_i"]["mean"] == kennen_i["cv.acc.mean"]  # kennen-i in the same folds
    assert m["whitebox"]["mean_low"] <= m["whitebox"]["mean"] <= m["whitebox"]["mean_high"]
    rows = read_csv(tiny_zoo / "reports/plots/defences/privacy_utility.csv")
    assert [r["setting"] for r in rows] == list(m["settings"])
    attrs = read_csv(tiny_zoo / "reports/plots/defences/attributes.csv")
    assert {(r["setting"], r["attacker"]) for r in attrs} >= {("weights", "white-box"), ("label", "kennen-i")}
    assert (tiny_zoo / "reports/figures/defences/privacy_utility.png").stat().st_size > 1000


def test_defences_stage_rejects_bad_settings_in_one_line(tiny_zoo, tmp_path, capsys):
    params = yaml.safe_load((tiny_zoo / "params.yaml").read_text())
    for bad, key in ((["topk:11"], "defences.settings[0]"), (["smooth"], "defences.settings[0]"),
                     (["label", "label"], "defences.settings[1]"), ([], "defences.settings")):  # fmt: skip
        params["defences"]["settings"] = bad
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        assert _run_stage(tiny_zoo, "defences", "--params", str(tmp_path / "params.yaml")) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and key in err, err


@pytest.mark.slow
def test_levers_stage_pairs_every_lever_with_kennen_o_itself(tiny_zoo):
    assert _run_stage(tiny_zoo, "levers") == 0
    lv = json.loads((tiny_zoo / "reports/metrics/levers.json").read_text())
    ko = json.loads((tiny_zoo / "reports/metrics/kennen_o.json").read_text())
    ref = lv["reference"]
    assert ref == "mlp.q5.first.argmax"  # kennen_o.n_queries of the tiny params
    # the reference row is the kennen_o stage's own cross-validation of the paper's recipe (final boxes), and
    # its row with checkpoint boxes the stage's headline: same trainings, same predictions
    assert lv[f"{ref}.acc_config.mean"] == ko["cv.final_boxes.acc_config.mean"]
    assert lv[f"{ref}.acc.mean"] == ko["cv.final_boxes.acc.mean"]
    assert lv["mlp.q5.first.checkpoints.argmax.acc.mean"] == ko["cv.acc.mean"]
    assert lv[f"{ref}.gap.diff"] == 0 and lv["n_boxes"] == ko["cv.n_boxes"]
    rows = read_csv(tiny_zoo / "reports/plots/levers/table.csv")
    families = ("mlp", "mlp_small", "logreg", "pca_logreg", "centroid", "knn")
    assert len(rows) == len(families) * 2 * 2 * 2 * 2  # x query budgets x selections x training boxes x answers
    assert {r["boxes"] for r in rows} == {"final", "checkpoints"}
    # with and without checkpoints, paired: for kennen-o's own recipe the same as its gap to the reference
    ckpt = "mlp.q5.first.checkpoints.argmax"
    assert lv[f"{ckpt}.ckpt_gap.diff"] == lv[f"{ckpt}.gap.diff"] and "mlp.q5.first.argmax.ckpt_gap.diff" not in lv
    # on the transfer stage's foreign boxes: kennen-o's recipe and the other levers, trained on every zoo box
    for regime in ("zoo", "long"):
        assert lv[f"foreign.{regime}.n_boxes"] == 2
        for lever in ("mlp.q5.first", "mlp.q5.greedy.checkpoints", "logreg.q5.greedy", "logreg.q5.first.checkpoints"):
            key = f"foreign.{regime}.{lever}.argmax.acc.mean"
            assert lv[f"{key}_low"] <= lv[key] <= lv[f"{key}_high"], key
        assert f"foreign.{regime}.logreg.q5.greedy.argmax.gap.diff" in lv
        assert f"foreign.{regime}.logreg.q5.greedy.checkpoints.argmax.ckpt_gap.diff" in lv
    for r in rows:
        assert float(r["mean_low"]) <= float(r["mean"]) <= float(r["mean_high"])
        if r["decode"] == "valid":
            assert float(r["valid"]) == 100.0  # every decoded answer is a configuration of Table 1


def _levers_inputs(root: Path):
    from kennen.config import load_params, section
    from kennen.metamodel import levers
    from kennen.metamodel.kennen_o import KennenOParams
    from kennen.queries import load_outputs, read_boxes
    from kennen.splits import read_folds

    params = load_params(root / "params.yaml")
    lp, kp = section(levers.LeversParams, params, "levers"), section(KennenOParams, params, "kennen_o")
    boxes = read_boxes(root / "data/queries/boxes.csv")
    outputs, _ = load_outputs(root / "data/queries/outputs.npz", boxes)
    return params, lp, kp, boxes, outputs, read_folds(root / "data/splits", boxes)


def test_levers_reference_row_is_the_kennen_o_stages_own_predictions(tiny_zoo, monkeypatch):
    from dataclasses import replace

    from kennen.metamodel import levers
    from kennen.metamodel.kennen_o import targets
    from kennen.queries import load_checkpoint_boxes

    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")
    params, lp, kp, boxes, outputs, folds = _levers_inputs(tiny_zoo)
    assert kp.boxes == "checkpoints"  # the headline learns from checkpoint boxes too: so does the row it equals
    lp = replace(lp, families=("mlp",), n_queries=(kp.n_queries,), boxes=("final", "checkpoints"))
    sets = levers.query_sets(outputs, targets(boxes).numpy(), folds, lp)
    ckpt = load_checkpoint_boxes(tiny_zoo / "data/queries/checkpoints.npz", boxes, outputs.shape[1])
    log_probs = levers.log_probabilities(outputs, boxes, folds, sets, lp, kp, params["seed"], ckpt)
    pred = np.stack([q.argmax(1) for q in log_probs["mlp", "first", kp.n_queries, "checkpoints"]], 1)
    ids, _, y_pred = read_predictions(tiny_zoo / "reports/plots/kennen_o/cv_predictions.csv")
    assert ids == list(range(len(boxes))) and (pred == y_pred).all()


def test_levers_greedy_queries_ignore_the_test_folds_outputs(tiny_zoo):
    from kennen.metamodel import levers
    from kennen.metamodel.kennen_o import targets
    from kennen.splits import fold_split

    _, lp, _, boxes, outputs, folds = _levers_inputs(tiny_zoo)
    y = targets(boxes).numpy()
    sets = levers.query_sets(outputs, y, folds, lp)
    test = fold_split(folds, 0)["test"]
    changed = outputs.copy()
    changed[test] = np.log(np.random.default_rng(0).dirichlet(np.ones(10), changed[test].shape[:2]))
    again = levers.query_sets(changed, y, folds, lp)
    n = max(lp.n_queries)
    assert (again["greedy", n, 0] == sets["greedy", n, 0]).all()  # fold 0 never saw its test boxes
    assert any((again["greedy", n, f] != sets["greedy", n, f]).any() for f in range(1, len(folds)))


def test_queries_stage_writes_the_checkpoint_boxes_of_the_kept_models(tiny_zoo):
    from kennen.queries import load_checkpoint_boxes, read_boxes

    boxes = read_boxes(tiny_zoo / "data/queries/boxes.csv")
    c = load_checkpoint_boxes(tiny_zoo / "data/queries/checkpoints.npz", boxes, 20)
    singles = [b["box"] for b in boxes if b["kind"] == "single"]
    assert sorted(c.box.tolist()) == singles and c.epoch.tolist() == [1.0] * len(singles)  # one checkpoint each
    assert np.allclose(np.exp(c.outputs).sum(-1), 1, atol=1e-4)
    with np.load(tiny_zoo / "data/queries/outputs.npz") as z:
        final = z["outputs"][c.box]
    assert np.abs(c.outputs - final).max() > 1e-3  # one epoch of two is not the final model


@pytest.mark.slow
def test_levers_checkpoint_boxes_of_a_test_fold_never_teach_it(tiny_zoo, monkeypatch):
    from dataclasses import replace

    from kennen.metamodel import levers
    from kennen.metamodel.kennen_o import targets
    from kennen.queries import load_checkpoint_boxes
    from kennen.splits import fold_split

    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")
    params, lp, kp, boxes, outputs, folds = _levers_inputs(tiny_zoo)
    c = load_checkpoint_boxes(tiny_zoo / "data/queries/checkpoints.npz", boxes, outputs.shape[1])
    lp = replace(lp, families=("logreg",), n_queries=(kp.n_queries,), boxes=("final", "checkpoints"))
    sets = levers.query_sets(outputs, targets(boxes).numpy(), folds, lp)
    before = levers.log_probabilities(outputs, boxes, folds, sets, lp, kp, params["seed"], c)
    test = fold_split(folds, 0)["test"]
    in_test = np.isin(c.box, test)
    assert in_test.any() and not in_test.all()
    changed = c.outputs.copy()
    changed[in_test] = np.log(np.random.default_rng(0).dirichlet(np.ones(10), changed[in_test].shape[:2]))
    after = levers.log_probabilities(outputs, boxes, folds, sets, lp, kp, params["seed"], replace(c, outputs=changed))
    key = ("logreg", "first", kp.n_queries, "checkpoints")
    for a, b in zip(before[key], after[key], strict=True):
        np.testing.assert_array_equal(a[test], b[test])  # fold 0 never learnt from its own models' checkpoints
    others = [i for i in range(len(boxes)) if i not in set(test)]
    assert any((a[others] != b[others]).any() for a, b in zip(before[key], after[key], strict=True))
    final = ("logreg", "first", kp.n_queries, "final")
    assert all((a == b).all() for a, b in zip(before[final], after[final], strict=True))


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"families": ["mlp", "forest"]}, "levers.families: ['forest'] is not in"),
        ({"boxes": ["checkpoints"]}, "levers.boxes: must hold final"),
        ({"n_queries": [2]}, "levers.n_queries: must hold kennen_o.n_queries (5)"),
        ({"n_queries": [5, 50]}, "levers.n_queries: 50 exceeds the 20 stored queries"),
        ({"families": ["mlp", "knn", "knn"]}, "levers.families: has a repeated value"),
    ],
)
def test_levers_stage_bad_params_are_one_line(tiny_zoo, tmp_path, capsys, override, needle):
    params = yaml.safe_load((tiny_zoo / "params.yaml").read_text())
    params["levers"] |= override
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    assert _run_stage(tiny_zoo, "levers", "--params", str(path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_schema_checks_benchmark_counts_every_reader(tiny_zoo, tmp_path, monkeypatch):
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("schema_checks", REPO / "benchmarks" / "schema_checks.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.chdir(tiny_zoo)
    out = tmp_path / "checks.json"
    monkeypatch.setattr(
        sys, "argv", ["schema_checks.py", "--pipeline-seconds", "100", "--repeat", "1", "--out", str(out)]
    )
    bench.main()
    r = json.loads(out.read_text())
    assert r["outputs_readers"] >= 10 and r["shards_readers"] >= 3  # kennen_o, 4 sweeps, levers, ...; queries, ...
    assert r["outputs_checked_s"] > 0 and abs(r["share_of_run_percent"] - r["extra_s_per_run"]) <= 0.01  # of 100 s
