"""The results page's sections, on small metric dicts."""

from __future__ import annotations

from kennen.attributes import KEYS
from kennen.results import ci
from kennen.results_page import transfer_section, uncertainty_section


def test_ci_formats_the_interval_when_present():
    assert ci({"acc.mean": 59.51, "acc.mean_low": 55.0, "acc.mean_high": 63.96}, "acc.mean") == "59.5 [55.0, 64.0]"
    assert ci({"acc.mean": 59.51}, "acc.mean") == "59.5"
    assert ci({}, "acc.mean") == "–"


def _metamodel(mean: float, width: float = 4.0) -> dict:
    m = {}
    for k in (*KEYS, "mean"):
        m[f"acc.{k}"], m[f"acc.{k}_low"], m[f"acc.{k}_high"] = mean, mean - width, mean + width
    return m


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


def _acc(mean: float, width: float = 4.0) -> dict:
    return {k: mean for k in (*KEYS, "mean")} | {"mean_low": mean - width, "mean_high": mean + width}


def test_defences_section_builds_the_ladder_and_calls_defences_by_their_intervals():
    from kennen.results_page import defences_section

    def setting(name: str, value, agreement: float, nonadaptive: float, adaptive: float) -> dict:
        return {"defence": name, "value": value, "utility": {"agreement": agreement, "acc_change": 0.0, "kl": 0.1},
                "nonadaptive": _acc(nonadaptive), "adaptive": _acc(adaptive)}  # fmt: skip

    d = {
        "n_train": 200, "n_test": 60, "n_queries": 100, "utility_queries": 1000, "chance": 34.9,
        "whitebox": _acc(80.0), "label_kennen_i": _acc(45.0),
        "settings": {
            "none": setting("none", None, 100.0, 60.0, 60.0),
            "round:2": setting("round", 2, 99.9, 58.0, 59.0),
            "round:1": setting("round", 1, 99.0, 50.0, 57.0),  # the strongest round: within noise of 60
            "label": setting("label", None, 100.0, 35.0, 44.0),  # beyond noise
        },
    }  # fmt: skip
    sweep = [{"output": "prob", "acc_mean": 60.0}, {"output": "top3", "acc_mean": 52.0, "acc_mean_low": 48.0,
                                                    "acc_mean_high": 56.0}]  # fmt: skip
    page = defences_section(d, sweep)
    assert "| weights (white box) |" in page and "80.0 [76.0, 84.0]" in page
    assert "| defended scores | `round:1` | 99.0 | 0.0 | 0.1 | 50.0 [46.0, 54.0] | 57.0 [53.0, 61.0] |" in page
    assert "| ranking | `top3` (kennen-o sweep) |" in page and "52.0 [48.0, 56.0]" in page
    assert "| labels | crafted queries (kennen-i) |" in page
    assert "strongest setting of 1 of 2 defences" in page and "`label`; within noise: `round:1`" in page
    assert "| `round:1` |" in page and "| `round:2` |" not in page.split("Per attribute")[1]  # strongest only
    assert "more, beyond noise" in page and "54.4" in page and "73.4" in page  # the paper's ablation, from paper.py
