"""The results page's row builders (``kennen/results.py``) on small hand-made metric dicts."""

from __future__ import annotations

import math

import pytest

from kennen import results as res
from kennen.attributes import KEYS, REPORT_ORDER
from kennen.paper import FAMILY_PROBE, TABLE2, TABLE3_KENNEN_IO, TABLE4, TABLE5

FAMILIES = ["squeezenet", "vgg", "vgg_bn", "resnet", "densenet"]


def _attrs(value: float) -> dict[str, float]:
    return {k: value for k in KEYS}


def _acc(mean: float, width: float = 4.0) -> dict:
    return _attrs(mean) | {"mean": mean, "mean_low": mean - width, "mean_high": mean + width}


def _metamodel(mean: float, width: float = 4.0) -> dict:
    m = {}
    for k in (*KEYS, "mean"):
        m[f"acc.{k}"], m[f"acc.{k}_low"], m[f"acc.{k}_high"] = mean, mean - width, mean + width
    return m


PARAMS = {
    "train_zoo": {"epochs": 2, "pool_size": 12000},
    "prune": {"min_acc": 90.0},
    "kennen_o": {"optimiser": "default", "output": "prob"},
    "kennen_i": {"target": "each"},
}


@pytest.mark.parametrize(
    ("value", "text"), [(59.54, "59.5"), (-0.04, "0.0"), (float("nan"), "–"), (3, "3"), ("x", "x"), (None, "None")]
)
def test_fmt(value, text):
    assert res.fmt(value) == text


def test_ci_formats_the_interval_when_present():
    assert res.ci({"a": 59.51, "a_low": 55.0, "a_high": 63.96}, "a") == "59.5 [55.0, 64.0]"
    assert res.ci({"a": 59.51, "a_low": float("nan"), "a_high": 63.0}, "a") == "59.5"
    assert res.ci({}, "a") == "–"


def test_zoo_rows_set_the_paper_zoo_next_to_ours():
    zoo = {"n_models": 250, "n_kept": 234, "n_ensembles": 94, "n_final": 328, "acc_mean": 93.66, "n_par_classes": 6}
    rows = res.zoo_rows(zoo, {"n_train": 258, "n_test": 70}, PARAMS)
    assert rows[0] == ["models trained", 250, "10,000"]
    assert rows[1] == ["epochs per model, training images", "2, subsets of 12,000", "100, subsets of 60,000"]
    assert rows[2] == ["kept after pruning (test accuracy ≥ 90.0%)", 234, "8,582 (≥ 98%)"]
    assert rows[5][1] == "93.7%" and rows[6] == ["`n_par` classes present", "6 of 8", 8]
    assert rows[7] == ["meta-train / meta-test boxes (R split)", "258 / 70", "5,000 / 1,000"]


def test_table2_rows():
    settings = [{"setting": "default", **_attrs(60.0), "mean": 60.0}, {"setting": "sgd", **_attrs(50.0), "mean": 50.0}]
    sweep = [
        {"output": "prob", **_attrs(60.0), "acc_mean": 60.0},
        {"output": "top1", **_attrs(45.0), "acc_mean": 45.0},
        {"output": "top3", **_attrs(55.0), "acc_mean": 55.0},  # not a Table 2 output: left to the output table
    ]
    targets = [{"target": "each", **_attrs(40.0), "mean": 40.0}, {"target": "all", **_attrs(35.0), "mean": 35.0}]
    rows = res.table2_rows(_metamodel(60.0), settings, sweep, _metamodel(40.0), targets, _metamodel(65.0), PARAMS)
    labels = [r[0] for r in rows]
    assert labels[:2] == ["chance (Table 1)", "paper: chance"]
    assert rows[0][2:] == [25.0, 50.0, 50.0, 50.0, 33.3, 33.3, 12.5, 50.0, 33.3, 33.3, 33.3, 14.3, 34.9]
    assert rows[2] == ["kennen-o, `default` optimiser (headline)", "prob", *[60.0] * 12, "60.0 [56.0, 64.0]"]
    assert rows[3][0] == "kennen-o, `sgd` optimiser" and rows[3][-1] == 50.0
    assert rows[4][:2] == ["kennen-o, `default` optimiser", "top1"]
    assert "top3" not in [r[1] for r in rows]
    assert rows[5][0] == "kennen-i, one query per attribute (headline)" and rows[5][-1] == "40.0 [36.0, 44.0]"
    assert rows[6][0] == "kennen-i, one query for all (official run.py)" and rows[6][-1] == 35.0
    assert rows[7] == ["kennen-io", "prob", *[65.0] * 12, "65.0 [61.0, 69.0]"]
    paper = rows[8:]
    assert [r[:2] for r in paper] == [["paper: kennen-o", "prob"], ["paper: kennen-o", "top10"],
                                      ["paper: kennen-o", "top1"], ["paper: kennen-i", "top1"],
                                      ["paper: kennen-io", "prob"]]  # fmt: skip
    assert paper[-1][2:] == [TABLE2["kennen-io prob"][k] for k in (*REPORT_ORDER, "mean")]
    assert all(len(r) == 2 + len(REPORT_ORDER) + 1 for r in rows)


@pytest.mark.parametrize(
    ("means", "says"),
    [
        ({"kennen-io": 70.0, "kennen-o": 60.0, "kennen-i": 40.0}, "That is the same order as the paper's."),
        ({"kennen-io": 60.5, "kennen-o": 61.0, "kennen-i": 40.0}, "That is not the paper's order. A gap under two"),
    ],
)
def test_ordering(means, says):
    text = res.ordering(means)
    assert "; the paper: kennen-io (80.1) > kennen-o (73.4) > kennen-i (52.7)." in text
    assert says in text


def test_output_and_curve_rows():
    out = [{"output": "prob", "acc_mean": 60.0, "acc_scaled": 40.0}, {"output": "top3", "acc_mean": 50.0,
                                                                       "acc_scaled": 30.0}]  # fmt: skip
    rows = res.output_rows(out)
    assert rows[0] == ["prob", 60.0, 40.0, TABLE2["kennen-o prob"]["mean"]]
    assert rows[1][:3] == ["top3", 50.0, 30.0] and math.isnan(rows[1][3])
    assert res.curve_rows([{"n_queries": 10, "acc_mean": 50.0, "acc_scaled": 20.0}], "n_queries") == [[10, 50.0, 20.0]]


def test_extrapolation_rows_join_kennen_io_and_the_paper_by_split():
    ext = [{"split": "e_alg", "n_train": 100, "n_test": 30, "acc_mean": 50.0, "r_acc_mean": 60.0, "relative": 70.0},
           {"split": "e_new", "n_train": 90, "n_test": 20, "acc_mean": 45.0, "r_acc_mean": 60.0, "relative": 55.0}]  # fmt: skip
    rows = res.extrapolation_rows(ext, [{"split": "e_alg", "relative": 80.0}])
    assert rows[0] == ["e_alg", 100, 30, 50.0, 60.0, 70.0, 80.0, TABLE3_KENNEN_IO["e_alg"]]
    assert math.isnan(rows[1][6]) and math.isnan(rows[1][7])


def test_uncertainty_rows_and_notes():
    o = _metamodel(59.0) | {"seeds.acc.mean": 58.7, "seeds.acc.mean_low": 57.0, "seeds.acc.mean_high": 60.4,
                            "seeds.acc.mean_sd": 0.7, "seeds.n": 3}  # fmt: skip
    io = _metamodel(62.0) | {"gap_vs_o.diff": 3.0, "gap_vs_o.low": 0.5, "gap_vs_o.high": 7.0,
                             "gap_vs_o.beyond_noise": 1.0}  # fmt: skip
    methods = {"kennen-o": o, "kennen-io": io}
    rows = res.uncertainty_rows(methods)
    assert rows[0] == ["kennen-o", *["59.0 [55.0, 63.0]"] * 13]
    notes = res.uncertainty_notes(methods, io)
    assert notes[0].startswith("- kennen-o over 3 metamodel seeds: mean 58.7 [57.0, 60.4]") and "sd 0.70" in notes[0]
    assert notes[1].endswith("[+0.5, +7.0]: beyond noise. The paper: +6.7.")
    assert res.uncertainty_notes({"kennen-o": _metamodel(50.0)}, _metamodel(50.0)) == []


def test_calibration_rows_skip_uncalibrated_metamodels():
    m = {"ece_before": 0.2, "ece_before_low": 0.15, "ece_before_high": 0.25, "ece_after": 0.05,
         "ece_after_low": 0.03, "ece_after_high": 0.07, "calibration.n_val": 40.0, "abstain.min_confidence": 0.5,
         "abstain.coverage": 70.0, "abstain.accuracy": 91.0, "abstain.accuracy_all": 80.0, "ood.test_rate": 1.0}  # fmt: skip
    rows = res.calibration_rows({"kennen-o": m, "kennen-i": {}})
    assert rows == [["kennen-o", 40, "0.200 [0.150, 0.250]", "0.050 [0.030, 0.070]", "0.50", 70.0, 91.0, 80.0, 1.0]]


def test_transfer_rows():
    t = {"chance_mean": 35.4, "long.n_scored": 8, "long.box_acc_median": 97.1}
    for key, mean in (("kennen_o", 50.0), ("kennen_i", 70.0)):
        for k, v in _metamodel(mean).items():
            t[f"long.{key}.{k}"] = v
        t[f"long.{key}.in_zoo_mean"] = 60.0
    t |= {"long.kennen_o.all_acc": 50.0, "long.kennen_o.ece": 0.1}
    regimes = {"long": {"epochs": 4, "pool": 60000}, "short": {"epochs": 1, "pool": 100}}  # short: not scored
    rows = res.transfer_rows(t, regimes)
    assert rows == [
        ["long (4 epoch(s), 60,000 pool)", 8, 97.1, "kennen-o (prob)", "50.0 [46.0, 54.0]", 60.0, "below the zoo"],
        ["long (4 epoch(s), 60,000 pool)", 8, 97.1, "kennen-i (top-1 label)", "70.0 [66.0, 74.0]", 60.0,
         "above the zoo"],
    ]  # fmt: skip
    assert res.transfer_attribute_rows(t, regimes, ["act"]) == [
        ["long", "kennen-o (prob)", "50.0 [46.0, 54.0]"],
        ["long", "kennen-i (top-1 label)", "70.0 [66.0, 74.0]"],
    ]
    conf = res.transfer_confidence_rows(t, regimes)
    assert len(conf) == 1 and conf[0][:2] == ["long", "kennen-o (prob)"] and conf[0][5:] == [50.0, "0.100"]


def _setting(name: str, agreement: float, nonadaptive: float, adaptive: float, gap=(0.0, -3.0, 3.0)) -> dict:
    diff, lo, hi = gap
    return {"defence": name, "utility": {"agreement": agreement, "acc_change": 0.0, "kl": 0.1},
            "nonadaptive": _acc(nonadaptive), "adaptive": _acc(adaptive) | {"config_mean": adaptive},
            "adaptive_vs_none": {"diff": diff, "low": lo, "high": hi, "beyond_noise": float(hi < 0 or lo > 0)}}  # fmt: skip


DEFENCES = {
    "whitebox": _acc(80.0),
    "label_kennen_i": _acc(45.0),
    "settings": {
        "none": _setting("none", 100.0, 60.0, 60.0),
        "round:2": _setting("round", 99.9, 58.0, 59.0),
        "round:1": _setting("round", 99.0, 50.0, 57.0, (-3.0, -6.0, 0.5)),  # the strongest round: within noise
        "label": _setting("label", 100.0, 35.0, 44.0, (-16.0, -20.0, -12.0)),  # beyond noise
    },
}


def test_defence_rows_and_verdict():
    assert res.strongest_defences(DEFENCES["settings"]) == ["round:1", "label"]
    sweep = [{"output": "prob", "acc_mean": 60.0}, {"output": "top1", "acc_mean": 45.0}]
    ladder = res.defence_ladder_rows(DEFENCES, sweep)
    assert [r[0] for r in ladder] == ["weights (white box)", "scores", "defended scores", "defended scores", "labels",
                                      "labels", "labels"]  # fmt: skip
    assert ladder[1] == ["scores", "`none`", 100.0, 0.0, 0.1, "–", "60.0 [56.0, 64.0]"]
    assert ladder[5] == ["labels", "`top1` (kennen-o sweep)", "–", "–", "–", "–", "45.0"]
    per = res.defence_attribute_rows(DEFENCES)
    assert [r[0] for r in per] == ["white box", "`none`", "`round:1`", "`label`"] and per[3][-1] == 44.0
    verdict = res.defence_verdict(DEFENCES)
    assert (
        "the strongest setting of 1 of 2 defences" in verdict
        and "below 0): `label`; within noise: `round:1`." in verdict
    )
    assert "(the two intervals apart) it would be 1, the same verdicts." in verdict
    assert verdict.endswith("against 60.0 from scores (over boxes, intervals over configurations): more, beyond noise.")


def test_family_probe_rows_and_the_papers_words():
    rows = [{"feature": f, "n_queries": n, "acc": 50.0, "acc_low": 40.0, "acc_high": 60.0,
             **{f"acc.{fam}": 50.0 for fam in FAMILIES}} for f in ("prob", "sorted") for n in (10, 100)]  # fmt: skip
    out = res.family_probe_rows({"feature": "sorted"}, rows, FAMILIES)
    assert out[0][:3] == ["`prob`", 10, "50.0 [40.0, 60.0]"] and math.isnan(out[0][-1])
    assert out[3][0] == "`sorted` (headline)" and out[3][-1] == FAMILY_PROBE[100]
    assert (
        res.paper_family_probe()
        == "90.4% with 100 queries, 94.8% with 1,000 (19 pretrained models, 10 folds × 10 draws)"
    )


def _attack(t5: dict[str, float], diagonal: float = 90.0) -> dict:
    t4 = {r: {f: (diagonal if r == f else 40.0) for f in FAMILIES} for r in ["clean", *FAMILIES, "ens"]}
    return {"table4": t4, "table5": t5, "fooled": {"table5": dict.fromkeys(t5, 50.0)}, "targets": 10, "images": 50}


@pytest.mark.parametrize(
    ("t5", "says"),
    [
        ({"white_box": 100.0, "true_family": 80.0, "predicted_family": 78.0, "all_families": 60.0}, "**holds** here"),
        ({"white_box": 100.0, "true_family": 61.0, "predicted_family": 60.0, "all_families": 60.0}, "within noise"),
        (
            {"white_box": 100.0, "true_family": 55.0, "predicted_family": 50.0, "all_families": 60.0},
            "**does not hold**",
        ),
    ],
)
def test_attack_tables_and_verdict(t5, says):
    a = _attack(t5)
    rows4 = res.table4_rows(a)
    assert rows4[0][0] == "clean" and rows4[1][0] == "**squeezenet**" and rows4[-1][0] == "ens"
    assert rows4[1][1] == f"90.0 ({TABLE4['squeezenet']['squeezenet']})"
    assert res.table5_rows(a)[1] == ["true family", t5["true_family"], TABLE5["true_family"], 50.0]
    verdict = res.attack_verdict(a)
    assert verdict.startswith("Within-family images transfer best to 5 of 5 target families (squeezenet, vgg,")
    assert says in verdict
