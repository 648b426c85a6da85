"""The paper's numbers to compare against (``shared/kennen-protocol.md`` §6-7), as data."""

from __future__ import annotations

# Table 2: random split, 5,000 training models, 100 queries (kennen-i: 1 query). Columns in REPORT_ORDER.
_COLS = ("act", "drop", "pool", "ks", "n_conv", "n_fc", "n_par", "ens", "alg", "bs", "size", "split")
TABLE2: dict[str, dict[str, float]] = {
    name: dict(zip(_COLS, values, strict=True)) | {"mean": mean}
    for name, values, mean in (
        ("chance", (25.0, 50.0, 50.0, 50.0, 33.3, 33.3, 12.5, 50.0, 33.3, 33.3, 33.3, 14.3), 34.9),
        ("kennen-o prob", (80.6, 94.6, 94.9, 84.6, 67.1, 77.3, 41.7, 54.0, 71.8, 50.4, 73.8, 90.0), 73.4),
        ("kennen-o top10", (63.7, 93.8, 90.8, 80.0, 63.0, 73.7, 44.1, 62.4, 65.3, 47.0, 66.2, 86.6), 69.7),
        ("kennen-o top1", (48.6, 80.0, 73.6, 64.0, 48.9, 63.1, 28.7, 52.8, 53.6, 41.9, 45.9, 51.4), 54.4),
        ("kennen-i top1", (43.5, 77.0, 94.8, 88.5, 54.5, 41.0, 32.3, 46.5, 45.7, 37.0, 42.6, 29.3), 52.7),
        ("kennen-io prob", (88.4, 95.8, 99.5, 97.7, 80.3, 80.2, 45.2, 60.2, 79.3, 54.3, 84.8, 95.6), 80.1),
    )
}
# Table 3: kennen-io relative accuracy on the extrapolation splits (R = 100, chance = 0).
TABLE3_KENNEN_IO: dict[str, float] = {
    "e_conv": 92.1,
    "e_conv_fc": 80.7,
    "e_alg": 88.5,
    "e_alg_bs": 70.1,
    "e_size": 86.9,
}
PAPER_ZOO = {
    "n_models": 10_000,
    "n_kept": 8_582,
    "n_ensembles": 2_700,
    "n_final": 11_282,
    "n_train": 5_000,
    "n_test": 1_000,
}
