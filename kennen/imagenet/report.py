"""Plots of the family probe: accuracy against the number of queries, and the confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kennen.paper import FAMILY_PROBE
from kennen.plots import plt, save_figure


def plot_accuracy(
    rows: list[dict], families: list[str], title: str, figure: Path, others: dict[str, list[dict]] | None = None
) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = [r["n_queries"] for r in rows]
    ax.plot(xs, [r["acc"] for r in rows], "o-", lw=2, label="overall (this run)")
    for name, other in (others or {}).items():
        ax.plot([r["n_queries"] for r in other], [r["acc"] for r in other], "s--", lw=1.5, label=f"overall, {name}")
    for f in families:
        ax.plot(xs, [r[f"acc.{f}"] for r in rows], ":", alpha=0.7, label=f)
    ax.scatter(
        list(FAMILY_PROBE),
        list(FAMILY_PROBE.values()),
        color="#c44e52",
        marker="D",
        zorder=3,
        label="paper (pretrained)",
    )
    ax.axhline(100 / len(families), color="grey", lw=1, ls="--", label="chance")
    ax.set(xscale="log", xlabel="queries", ylabel="family accuracy (%)", ylim=(0, 102), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, figure)


def plot_confusion(cm: np.ndarray, families: list[str], title: str, figure: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4.4))
    recall = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(recall, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(len(families)), families, rotation=45, ha="right")
    ax.set_yticks(range(len(families)), families)
    for (r, c), n in np.ndenumerate(cm):
        ax.text(c, r, str(n), ha="center", va="center", fontsize=8, color="white" if recall[r, c] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="actual", title=title)
    save_figure(fig, figure)


def plot_attack(table4: dict[str, dict[str, float]], families: list[str], title: str, figure: Path) -> None:
    """Table 4 as a heatmap: rows are the generating sets (and clean), columns the target families."""
    rows = list(table4)
    values = np.array([[table4[r][f] for f in families] for r in rows])
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    ax.imshow(values, vmin=0, vmax=100, cmap="Reds")
    ax.set_xticks(range(len(families)), families, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for (r, c), v in np.ndenumerate(values):
        ax.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=8, color="white" if v > 60 else "black",
                fontweight="bold" if rows[r] == families[c] else "normal")  # fmt: skip
    ax.set(xlabel="target family", ylabel="generating family", title=title)
    save_figure(fig, figure)
