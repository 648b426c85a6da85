"""Figures: matplotlib PNGs rendered offline, next to the DVC plot data they show.

DVC's HTML plots load Vega from a CDN (``shared/dvc-notes.md`` §3.7), so every
data plot is also written as a PNG image plot that renders anywhere.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from kennen.io import atomic_path  # noqa: E402


def save_figure(fig: plt.Figure, path: str | Path) -> None:
    """Atomically save ``fig`` as PNG and close it. Metadata is stripped so reruns are byte-stable."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)


__all__ = ["plt", "save_figure"]
