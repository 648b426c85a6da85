"""The results page's sections, on small metric dicts."""

from __future__ import annotations

from kennen.attributes import KEYS
from kennen.results_page import ci, transfer_section, uncertainty_section


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
