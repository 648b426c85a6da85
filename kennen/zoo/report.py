"""Zoo summary: metrics for ``dvc exp show`` and plots of accuracy and composition."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from kennen.attributes import ATTRIBUTES, BY_KEY
from kennen.io import write_csv
from kennen.plots import plt, save_figure

HIST_BINS = np.arange(0, 101, 5)


def zoo_metrics(models: list[dict[str, Any]], kept: list[int], ensembles: list[dict[str, Any]]) -> dict[str, Any]:
    """Flat metrics of a trained, pruned and ensembled zoo."""
    acc = np.array([m["test_acc"] for m in models])
    kept_set = set(kept)
    kept_acc = np.array([m["test_acc"] for m in models if m["model_id"] in kept_set])
    final = [m for m in models if m["model_id"] in kept_set] + ensembles
    per_config = Counter(r["config"] for r in final)
    missing = [f"{a.key}={v}" for a in ATTRIBUTES for v in a.values if not any(r[a.key] == v for r in final)]
    return {
        "n_models": len(models),
        "n_kept": len(kept),
        "n_diverged": sum(m["diverged"] for m in models),
        "n_ensembles": len(ensembles),
        "n_final": len(final),
        "acc_mean": round(float(acc.mean()), 3),
        "acc_median": round(float(np.median(acc)), 3),
        "acc_min": round(float(acc.min()), 3),
        "acc_max": round(float(acc.max()), 3),
        "kept_acc_mean": round(float(kept_acc.mean()), 3) if len(kept_acc) else 0.0,
        "n_par_classes": len({r["n_par"] for r in final}),
        "n_missing_values": len(missing),
        # the unit the intervals resample, and how unevenly the boxes fall into it
        "n_configs": len(per_config),
        "max_boxes_per_config": max(per_config.values(), default=0),
        "configs_with_siblings": sum(n > 1 for n in per_config.values()),
        "ensemble_share": round(100.0 * len(ensembles) / max(len(final), 1), 2),
        "models_per_box": round(len(models) / max(len(final), 1), 3),
    }


def _label(key: str, value: Any) -> str:
    attr = BY_KEY[key]
    return f"{attr.title}={attr.labels[attr.index(value)]}"


def write_plots(
    models: list[dict[str, Any]],
    kept: list[int],
    ensembles: list[dict[str, Any]],
    min_acc: float,
    data_dir: Path,
    fig_dir: Path,
) -> None:
    """DVC plot data (CSV) in ``data_dir`` and PNG figures in ``fig_dir``."""
    acc = np.array([m["test_acc"] for m in models])
    counts, _ = np.histogram(acc, bins=HIST_BINS)
    hist = [
        {"acc_bin": f"{lo:g}-{lo + 5:g}", "acc_low": float(lo), "n_models": int(c)}
        for lo, c in zip(HIST_BINS[:-1], counts, strict=True)
    ]
    write_csv(data_dir / "acc_hist.csv", hist, ("acc_bin", "acc_low", "n_models"))

    by_value = []
    for attr in ATTRIBUTES:
        if attr.key in ("ens", "n_par"):
            continue  # single models have ens=No and only 4 n_par classes; shown in the composition plot
        for v in attr.values:
            a = [m["test_acc"] for m in models if m[attr.key] == v]
            by_value.append(
                {
                    "attr_value": _label(attr.key, v),
                    "n_models": len(a),
                    "acc_mean": round(float(np.mean(a)), 3) if a else math.nan,
                }
            )
    write_csv(
        data_dir / "acc_by_attribute.csv",
        [r for r in by_value if r["n_models"]],
        ("attr_value", "n_models", "acc_mean"),
    )

    kept_set = set(kept)
    singles = [m for m in models if m["model_id"] in kept_set]
    comp = []
    for attr in ATTRIBUTES:
        s, e = Counter(m[attr.key] for m in singles), Counter(r[attr.key] for r in ensembles)
        comp += [
            {"attr_value": _label(attr.key, v), "singles": s[v], "ensembles": e[v], "n_models": s[v] + e[v]}
            for v in attr.values
        ]
    write_csv(data_dir / "composition.csv", comp, ("attr_value", "singles", "ensembles", "n_models"))

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(HIST_BINS[:-1], counts, width=5, align="edge", color="#4c72b0", edgecolor="white")
    ax.axvline(min_acc, color="#c44e52", ls="--", label=f"prune.min_acc = {min_acc:g}")
    ax.set(xlabel="MNIST test accuracy (%)", ylabel="models", title=f"Zoo test accuracy ({len(models)} models)")
    ax.legend()
    save_figure(fig, fig_dir / "acc_hist.png")

    shown = [r for r in by_value if r["n_models"]]
    fig, ax = plt.subplots(figsize=(6, 0.22 * len(shown) + 1))
    ax.barh([r["attr_value"] for r in shown][::-1], [r["acc_mean"] for r in shown][::-1], color="#55a868")
    ax.set(xlabel="mean test accuracy (%)", title="Accuracy by attribute value (all trained models)")
    ax.set_xlim(max(0.0, min(r["acc_mean"] for r in shown) - 10), 100)
    save_figure(fig, fig_dir / "acc_by_attribute.png")

    fig, ax = plt.subplots(figsize=(6, 0.22 * len(comp) + 1))
    names = [r["attr_value"] for r in comp][::-1]
    ax.barh(names, [r["singles"] for r in comp][::-1], color="#4c72b0", label="kept single models")
    ax.barh(
        names,
        [r["ensembles"] for r in comp][::-1],
        left=[r["singles"] for r in comp][::-1],
        color="#dd8452",
        label="ensembles",
    )
    ax.set(xlabel="models in the final zoo", title="Zoo composition by attribute value")
    ax.legend(loc="lower right")
    save_figure(fig, fig_dir / "composition.png")
