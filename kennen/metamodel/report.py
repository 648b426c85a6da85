"""Plots and tables of metamodel results: confusion matrices and sweep curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kennen.attributes import ATTRIBUTES
from kennen.io import write_csv
from kennen.metamodel.metrics import confusion
from kennen.plots import plt, save_figure


def write_confusions(y_true: np.ndarray, y_pred: np.ndarray, data_dir: Path, figure: Path, title: str) -> None:
    """One CSV per attribute (rows: actual, predicted labels; DVC's confusion template) and a PNG grid."""
    fig, axes = plt.subplots(3, 4, figsize=(14, 10))
    for i, (attr, ax) in enumerate(zip(ATTRIBUTES, axes.flat, strict=True)):
        rows = [
            {"actual": attr.labels[t], "predicted": attr.labels[p]}
            for t, p in zip(y_true[:, i], y_pred[:, i], strict=True)
        ]
        write_csv(data_dir / f"{attr.key}.csv", rows, ("actual", "predicted"))
        cm = confusion(y_true[:, i], y_pred[:, i], attr.n_classes)
        recall = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(recall, vmin=0, vmax=1, cmap="Blues")
        ax.set_xticks(range(attr.n_classes), attr.labels, rotation=90, fontsize=7)
        ax.set_yticks(range(attr.n_classes), attr.labels, fontsize=7)
        for (r, c), n in np.ndenumerate(cm):
            if n:
                ax.text(
                    c, r, str(n), ha="center", va="center", fontsize=6, color="white" if recall[r, c] > 0.5 else "black"
                )
        ax.set_title(attr.title)
    fig.suptitle(f"{title}: confusion matrices on the test boxes (rows: actual, columns: predicted)")
    save_figure(fig, figure)


def plot_curve(rows: list[dict], x: str, xlabel: str, title: str, figure: Path, log_x: bool = False) -> None:
    """Mean accuracy and chance-scaled accuracy against ``x`` (paper Figure 4 style)."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    xs = [r[x] for r in rows]
    ax.plot(xs, [r["acc_mean"] for r in rows], "o-", label="mean class-balanced accuracy")
    ax.plot(xs, [r["acc_scaled"] for r in rows], "s--", label="scaled: chance = 0, perfect = 100")
    if log_x:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel="%", title=title, ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, figure)


def plot_bars(
    rows: list[dict], x: str, y: str, title: str, figure: Path, reference: dict[str, float] | None = None
) -> None:
    """Bars of ``y`` per ``x`` value, with optional paper reference markers."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    names = [str(r[x]) for r in rows]
    ax.bar(names, [r[y] for r in rows], color="#4c72b0", label="kennen (this run)")
    if reference:
        ax.scatter(
            [n for n in names if n in reference],
            [reference[n] for n in names if n in reference],
            color="#c44e52",
            marker="D",
            zorder=3,
            label="paper",
        )
    ax.set(title=title, ylabel="%")
    ax.tick_params(axis="x", rotation=45)
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    save_figure(fig, figure)


def write_table(path: Path, rows: list[dict]) -> None:
    write_csv(path, rows, list(rows[0]))


def plot_images(images: np.ndarray, titles: list[str], figure: Path, title: str, cols: int = 6) -> None:
    """A grid of crafted query images (pixels in [0, 1], [N, 28, 28] or [N, 1, 28, 28])."""
    images = images.reshape(len(images), 28, 28)
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.1 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for img, name, ax in zip(images, titles, axes.flat, strict=False):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(name, fontsize=8)
    fig.suptitle(title)
    save_figure(fig, figure)


def plot_reliability(rows: list[dict], figure: Path, title: str) -> None:
    """Reliability diagram: accuracy against confidence per bin, before and after calibration (``calibration.py``)."""
    fig, ax = plt.subplots(figsize=(5, 4.6))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":", label="perfect calibration")
    for label, style in zip(dict.fromkeys(r["calibration"] for r in rows), ("s--", "o-"), strict=False):
        pts = [r for r in rows if r["calibration"] == label]
        ax.plot([r["confidence"] for r in pts], [r["accuracy"] for r in pts], style, label=label)
    ax.set(xlabel="confidence (mean per bin)", ylabel="accuracy of the answers", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, figure)


def plot_privacy_utility(rows: list[dict], figure: Path, whitebox: float, chance: float) -> None:
    """Mean attribute accuracy against what a defence costs: a curve per defence, adaptive (solid) and not (dashed).

    Left, the cost as top-1 agreement with the undefended box (the issue's axis); right, as the mean
    KL divergence from the undefended answer, because most defences keep every label (agreement 100%)
    and only the KL tells them apart.
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    by_defence: dict[str, list[dict]] = {}
    for r in rows:
        by_defence.setdefault(r["defence"], []).append(r)
    none = by_defence.pop("none", [])
    for ax, x_key in zip(axes, ("agreement", "kl"), strict=True):
        for i, (name, rs) in enumerate(by_defence.items()):
            color = f"C{i % 10}"
            xs = [r[x_key] for r in rs]
            ax.plot(xs, [r["adaptive"] for r in rs], "o-", color=color, label=f"{name} (adaptive)")
            ax.plot(xs, [r["nonadaptive"] for r in rs], "x--", color=color, alpha=0.7)
        for r in none:
            ax.plot([r[x_key]], [r["adaptive"]], "k*", markersize=12, label="no defence")
        ax.axhline(whitebox, color="k", lw=1, ls="-.", label="white box (weights)")
        ax.axhline(chance, color="grey", lw=1, ls=":", label="chance")
        ax.grid(alpha=0.3)
    axes[0].set(xlabel="top-1 agreement with the undefended box (%)", ylabel="kennen-o mean attribute accuracy (%)",
                ylim=(0, 100))  # fmt: skip
    axes[1].set_xscale("symlog", linthresh=1e-2)
    axes[1].set_xlim(0, 1.5 * max([r["kl"] for r in rows] + [0.01]))
    axes[1].set(xlabel="mean KL(undefended || defended), nats (linear below 0.01, log above)")
    axes[1].legend(fontsize=7, loc="upper left", ncol=3)
    fig.suptitle("What a defended output still gives away (dashed: non-adaptive attacker)")
    save_figure(fig, figure)
