"""The results page's sections, on small metric dicts."""

from __future__ import annotations

from pathlib import Path

from kennen.attributes import KEYS
from kennen.results import ci
from kennen.results_page import levers_section, render, transfer_section, uncertainty_section


def test_ci_formats_the_interval_when_present():
    assert ci({"acc.mean": 59.51, "acc.mean_low": 55.0, "acc.mean_high": 63.96}, "acc.mean") == "59.5 [55.0, 64.0]"
    assert ci({"acc.mean": 59.51}, "acc.mean") == "59.5"
    assert ci({}, "acc.mean") == "–"


def _metamodel(mean: float, width: float = 4.0) -> dict:
    m = {}
    for k in (*KEYS, "mean"):
        m[f"acc.{k}"], m[f"acc.{k}_low"], m[f"acc.{k}_high"] = mean, mean - width, mean + width
    return m


def _cv(mean: float, width: float = 5.0) -> dict:
    m = {"cv.k": 5, "cv.n_boxes": 300, "cv.n_configs": 200}
    for kind, shift in (("acc", 0.0), ("acc_config", -2.0)):
        for k in (*KEYS, "mean"):
            v = mean + shift
            m[f"cv.{kind}.{k}"], m[f"cv.{kind}.{k}_low"], m[f"cv.{kind}.{k}_high"] = v, v - width, v + width
    return m


def test_cv_section_leads_with_configurations_and_calls_gaps_by_their_paired_intervals():
    from kennen.results_page import cv_section

    o = _cv(60.0) | {"cv.logreg.acc_config.mean": 57.0, "cv.logreg.acc.mean": 58.0,
                     "cv.vs_logreg.acc_config.diff": 1.0, "cv.vs_logreg.acc_config.low": -1.5,
                     "cv.vs_logreg.acc_config.high": 3.5, "cv.vs_logreg.acc_config.beyond_noise": 0.0}  # fmt: skip
    io = _cv(63.0) | {"cv.gap_vs_o.acc_config.diff": 3.0, "cv.gap_vs_o.acc_config.low": 0.5,
                      "cv.gap_vs_o.acc_config.high": 5.5, "cv.gap_vs_o.acc_config.beyond_noise": 1.0}  # fmt: skip
    curve = [{"n_train": 25.0, "subsets": 5, "acc_config_mean": 45.0, "acc_config_sd": 2.0, "acc_mean": 46.0,
              "acc_sd": 2.5}]  # fmt: skip
    fit = {"fit.ok": 1.0, "fit.c": 66.0, "fit.c_low": 60.0, "fit.c_high": 80.0, "fit.b": 0.5, "fit.b_low": 0.2,
           "fit.b_high": 1.0, "fit.n_boot": 200, "fit.boxes_for_65": 4000.0, "fit.boxes_for_65_low": 900.0,
           "fit.boxes_for_65_high": None, "fit.boxes_for_73.4": None, "fit.boxes_for_73.4_low": 20000.0,
           "fit.boxes_for_73.4_high": None}  # fmt: skip
    page = cv_section(o, _cv(45.0), io, curve, fit)
    assert "300 boxes of 200 configurations" in page
    assert "| kennen-o (prob; ours: adam, early stopping) | 58.0 [53.0, 63.0] | 60.0 [55.0, 65.0] |" in page
    assert "| logistic regression (baseline) | 57.0 | 58.0 |" in page
    assert "logistic regression, same boxes, over configurations: +1.0 [-1.5, +3.5], within noise" in page
    assert "kennen-io − its warm start" in page and "+3.0 [+0.5, +5.5], beyond noise" in page
    assert "| 25.0 | 5 | 45.0 ± 2.0 | 46.0 ± 2.5 |" in page
    assert "65%: 4,000 boxes (95% interval 900 to never (the fitted plateau is below))" in page
    assert "| paper: kennen-o (R split, 5,000 training boxes) | – | 73.4 |" in page
    assert cv_section(_metamodel(60.0), {}, {}, [], {}) == ""  # no cross-validation: no section
    at_bound = fit | {"fit.c": 100.0, "fit.c_low": 100.0, "fit.c_high": 100.0}
    assert "no plateau below 100 in reach of these points" in cv_section(o, _cv(45.0), io, curve, at_bound)


def test_uncertainty_section_calls_the_gap_by_its_interval():
    io = _metamodel(62.0) | {
        "gap_vs_o.diff": 3.0,
        "gap_vs_o.low": -1.0,
        "gap_vs_o.high": 7.0,
        "gap_vs_o.beyond_noise": 0.0,
    }
    o = _metamodel(59.0) | {"seeds.acc.mean": 58.7, "seeds.acc.mean_low": 57.0, "seeds.acc.mean_high": 60.4,
                            "seeds.acc.mean_sd": 0.7, "seeds.n": 3}  # fmt: skip
    page = uncertainty_section(o, _metamodel(45.0), io)
    assert "| kennen-o | 59.0 [55.0, 63.0]" in page
    assert "+3.0 points" in page and "within noise" in page
    assert "over 3 metamodel seeds: mean 58.7 [57.0, 60.4]" in page
    io["gap_vs_o.low"], io["gap_vs_o.beyond_noise"] = 0.5, 1.0
    assert "beyond noise" in uncertainty_section(o, _metamodel(45.0), io)


def test_transfer_section_compares_foreign_boxes_with_the_zoo():
    t = {"chance_mean": 35.42, "long.n_scored": 8, "long.box_acc_median": 97.1}
    for k, v in _metamodel(50.0).items():
        t[f"long.kennen_o.{k}"] = v
    t["long.kennen_o.in_zoo_mean"] = 60.0
    params = {"transfer": {"regimes": {"long": {"epochs": 4, "pool": 60000}}}}
    page = transfer_section(t, params)
    assert (
        "| long (4 epoch(s), 60,000 pool) | 8 | 97.1 | kennen-o (prob) | 50.0 [46.0, 54.0] | 60.0 | below the zoo |"
        in page
    )
    assert "(chance 35.4%)" in page and "| act |" in page and "| split |" not in page.split("Per attribute")[1]
    assert "| in-zoo (cross-validated) |" in page


def _acc(mean: float, width: float = 4.0) -> dict:
    return {k: mean for k in (*KEYS, "mean")} | {"mean_low": mean - width, "mean_high": mean + width}


def test_defences_section_builds_the_ladder_and_calls_defences_by_their_intervals():
    from kennen.results_page import defences_section

    def setting(name: str, value, agreement: float, nonadaptive: float, adaptive: float, gap=(0.0, -3.0, 3.0)) -> dict:
        diff, lo, hi = gap
        return {"defence": name, "value": value, "utility": {"agreement": agreement, "acc_change": 0.0, "kl": 0.1},
                "nonadaptive": _acc(nonadaptive), "adaptive": _acc(adaptive) | {"config_mean": adaptive},
                "adaptive_vs_none": {"diff": diff, "low": lo, "high": hi, "beyond_noise": float(hi < 0 or lo > 0)}}  # fmt: skip

    d = {
        "n_boxes": 260, "n_configs": 200, "n_folds": 5, "n_queries": 100, "utility_queries": 1000, "chance": 34.9,
        "whitebox": _acc(80.0), "label_kennen_i": _acc(45.0),
        "settings": {
            "none": setting("none", None, 100.0, 60.0, 60.0),
            "round:2": setting("round", 2, 99.9, 58.0, 59.0),
            # the strongest round: within noise of 60 when paired, though its interval is apart from the clean one
            "round:1": setting("round", 1, 99.0, 50.0, 51.0, (-9.0, -20.0, 1.0)),
            "label": setting("label", None, 100.0, 35.0, 44.0, (-16.0, -20.0, -12.0)),  # beyond noise
        },
    }  # fmt: skip
    sweep = [{"output": "prob", "acc_mean": 60.0}, {"output": "top3", "acc_mean": 52.0, "acc_mean_low": 48.0,
                                                    "acc_mean_high": 56.0}]  # fmt: skip
    page = defences_section(d, sweep)
    assert "| weights (white box) |" in page and "80.0 [76.0, 84.0]" in page
    assert "| defended scores | `round:1` | 99.0 | 0.0 | 0.1 | 50.0 [46.0, 54.0] | 51.0 [47.0, 55.0] |" in page
    assert "| ranking | `top3` (kennen-o sweep) |" in page and "52.0 [48.0, 56.0]" in page
    assert "| labels | crafted queries (kennen-i) |" in page
    assert "strongest setting of 1 of 2 defences" in page and "`label`; within noise: `round:1`" in page
    assert "(the two intervals apart) it would be 2; the verdict differs for `round:1`" in page
    assert "5 cross-validation folds (260 boxes of 200 configurations" in page
    assert "| `round:1` |" in page and "| `round:2` |" not in page.split("Per attribute")[1]  # strongest only
    assert "more, beyond noise" in page and "54.4" in page and "73.4" in page  # the paper's ablation, from paper.py


def _render_inputs() -> dict:
    attrs = dict.fromkeys(KEYS, 55.0)
    families = {"squeezenet": ("squeezenet1_0",), "vgg": ("vgg11",)}
    params = {
        "train_zoo": {"epochs": 2, "pool_size": 12000},
        "prune": {"min_acc": 90.0},
        "kennen_o": {"optimiser": "default", "output": "prob", "n_queries": 100, "hidden": 1000,
                     "optimisers": {"default": {"name": "adam", "lr": 0.001}}},
        "kennen_i": {"target": "each", "epochs": 30, "step": {"lr": 1.0, "batch": 10}, "loss": "digits"},
        "kennen_io": {"n_queries": 100, "schedule": [{"train": "metamodel", "epochs": 200}], "step": {"lr": 0.01}},
        "imagenet_probe": {"families": families, "offline": {"seeds": 1, "steps": 50, "batch": 32, "image_size": 32}},
        "transfer": {"regimes": {}},
    }  # fmt: skip
    return {
        "zoo": {"n_models": 20, "n_kept": 18, "n_ensembles": 4, "n_final": 22, "acc_mean": 95.0, "n_par_classes": 5},
        "kennen_o": _metamodel(60.0) | {"n_train": 16, "n_test": 6},
        "settings": [{"setting": "default", **attrs, "mean": 55.0}],
        "sweeps": {
            "output": [{"output": "prob", **attrs, "acc_mean": 60.0, "acc_scaled": 38.6}],
            "n_train": [{"n_train": 8, "acc_mean": 50.0, "acc_scaled": 23.3}],
            "n_queries": [{"n_queries": 10, "acc_mean": 45.0, "acc_scaled": 15.6}],
            "extrapolation": [{"split": "e_alg", "n_train": 10, "n_test": 4, "acc_mean": 50.0, "r_acc_mean": 60.0,
                               "relative": 61.5}],
        },  # fmt: skip
        "params": params,
        "kennen_i": _metamodel(40.0) | {"in_range": 95.0},
        "kennen_i_targets": [{"target": "each", **attrs, "mean": 40.0}],
        "kennen_io": _metamodel(65.0),
        "kennen_io_ext": [{"split": "e_alg", "relative": 70.0}],
        "probe": {"feature": "prob", "mode": "offline", "surrogate_query_acc_mean": 90.0, "n_models": 2,
                  "n_architectures": 2, "folds": 2, "draws": 2, "chance": 50.0},
        "probe_rows": [{"feature": "prob", "n_queries": 100, "acc": 75.0, "acc.squeezenet": 50.0, "acc.vgg": 100.0}],
    }  # fmt: skip


def test_render_lays_out_every_section_from_small_metrics():
    page = render(**_render_inputs())
    headings = [line for line in page.splitlines() if line.startswith("## ")]
    assert headings == [
        "## The zoo",
        "## Table 2: the paper's protocol, one random split (100 queries; kennen-i: one per attribute)",
        "## Output types (paper §4, Figure 4 right, in the folds)",
        "## Number of queries (Figure 4 middle, in the folds)",
        "## Table 3 analogue: extrapolation splits",
        "## Uncertainty of the R split's figures",
        "## ImageNet model families (paper §7)",
        "## Figures",
    ]  # no calibration, transfer, defences or attack metrics: no such sections
    assert "| models trained | 20 | 10,000 |" in page
    assert "| kennen-o, `default` optimiser (headline) | prob | 55.0 |" in page
    assert "| paper: kennen-io | prob | 88.4 |" in page
    assert "Mean accuracy here: kennen-io (65.0) > kennen-o (60.0) > kennen-i (40.0); the paper:" in page
    assert "| prob | 60.0 | 38.6 | 73.4 |" in page and "| 10 | 45.0 | 15.6 |" in page
    assert "| e_alg | 10 | 4 | 50.0 | 60.0 | 61.5 | 70.0 | 88.5 |" in page
    assert "| `prob` (headline) | 100 | 75.0 | 50.0 | 100.0 | 90.4 |" in page
    assert "against the paper's 11,282 trained for 100 epochs on up to 60,000," in page
    assert page.endswith("![zoo accuracy](figures/zoo/acc_hist.png)\n")


def test_render_adds_the_attack_section_when_given():
    fams = ["squeezenet", "vgg"]
    t4 = {r: {f: 80.0 if r == f else 30.0 for f in fams} for r in ["clean", *fams, "ens"]}
    t5 = {"white_box": 100.0, "true_family": 80.0, "predicted_family": 70.0, "all_families": 60.0}
    attack = {"label": "offline surrogate", "mode": "offline", "targets": 2, "images": 50, "table4": t4, "table5": t5,
              "attack": {"eps": 0.1, "step": 0.03, "steps": 5, "random_start": True},
              "probe": {"right": 1, "of": 2, "feature": "prob", "queries": 100},
              "fooled": {"table5": dict.fromkeys(t5, 50.0)}, "table4_diagonal_mean": 80.0}  # fmt: skip
    page = render(**_render_inputs(), attack=attack)
    assert "## Family-aware adversarial examples (paper §7, Tables 4 and 5)" in page
    assert "Diagonal mean 80.0 (paper 86.4)." in page
    assert "| **vgg** | 30.0 (62) | 80.0 (96) |" in page and "| true family | 80.0 | 86.2 | 50.0 |" in page


def test_report_stage_renders_the_committed_metrics(tmp_path):
    """Smoke test of ``stages/report.py``: the committed metrics and plot data of the default run, into tmp_path."""
    from stages import report

    root = Path(__file__).resolve().parents[1]
    args = [
        f"--{name.replace('_', '-')}={root / 'reports' / 'metrics' / name}.json" for name in report.METRICS.values()
    ]
    out = tmp_path / "README.md"
    curve = root / "reports" / "metrics" / "kennen_o_sweep" / "n_train.json"
    rc = report.main(
        [*args, f"--params={root / 'params.yaml'}", f"--plots={root / 'reports' / 'plots'}", f"--out={out}",
         f"--learning-curve={curve}"]
    )  # fmt: skip
    assert rc == 0
    page = out.read_text(encoding="utf-8")
    for heading in ("## The zoo", "## Headline: cross-validation", "## Black boxes the zoo never saw",
                    "## Output defences", "## Family-aware"):  # fmt: skip
        assert heading in page
    assert page == (root / "reports" / "README.md").read_text(encoding="utf-8")  # the committed page is this one


def test_levers_section_sorts_by_mean_and_calls_gaps_uncorrected():
    def row(name, mean, gap, low, high):
        fam, q, sel, dec = name.split(".")
        return {"lever": name, "family": fam, "n_queries": int(q[1:]), "selection": sel, "decode": dec,
                "mean": mean, "mean_low": mean - 2, "mean_high": mean + 2, "acc_mean": mean + 0.5,
                "gap_diff": gap, "gap_low": low, "gap_high": high, "gap_beyond_noise": float(low > 0 or high < 0),
                "valid": 100.0 if dec == "valid" else 55.0}  # fmt: skip

    rows = [row("mlp.q100.first.argmax", 57.4, 0.0, 0.0, 0.0), row("logreg.q100.greedy.valid", 61.9, 4.5, 2.4, 6.6),
            row("knn.q10.first.argmax", 47.4, -10.0, -12.4, -7.9), row("mlp.q100.first.valid", 57.6, 0.2, -0.5, 0.8)]  # fmt: skip
    levers = {"reference": "mlp.q100.first.argmax", "n_folds": 5, "n_boxes": 261, "n_configs": 178}
    text = levers_section(levers, rows)
    lines = [ln for ln in text.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert [ln.split(" | ")[0] for ln in lines] == [
        "| logistic regression", "| kennen-o's MLP", "| kennen-o's MLP", "| k-nearest neighbours"]  # fmt: skip
    assert "| final | valid | 61.9 [59.9, 63.9] | 62.4 | +4.5 [+2.4, +6.6] | beyond noise | | 100% |" in lines[0]
    assert "| reference | | | 55% |" in lines[2] and "within noise" in lines[1] and "beyond noise" in lines[3]
    assert "uncorrected for the 3 comparisons" in text and "261 boxes of 178 configurations" in text
    # a lever with checkpoint boxes says what they add, paired with the same lever without them
    ckpt = row("mlp.q100.first.argmax", 59.2, 2.9, 1.1, 4.9) | {
        "boxes": "checkpoints",
        "lever": "mlp.q100.first.checkpoints.argmax",
    }
    ckpt |= {"ckpt_gap_diff": 2.9, "ckpt_gap_low": 1.1, "ckpt_gap_high": 4.9, "ckpt_gap_beyond_noise": 1.0}
    line = [ln for ln in levers_section(levers, [*rows, ckpt]).splitlines() if "final + checkpoints" in ln]
    assert len(line) == 1 and "| +2.9 [+1.1, +4.9], beyond noise | 55% |" in line[0]
