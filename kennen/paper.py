"""The paper's numbers (Oh et al., ICLR 2018; ``shared/kennen-protocol.md`` §2-7), as data.

This is the only place they are written: the results page, the plots and the stages read them from here
(``tests/test_paper_numbers.py`` fails if one appears anywhere else in ``kennen/`` or ``stages/``).
Table 1, the attributes themselves, is ``kennen/attributes.py``.
"""

from __future__ import annotations

from kennen.attributes import REPORT_ORDER

# §2-3: the zoo (10,000 trained for 100 epochs on subsets of the 60,000 MNIST training images, pruned below
# 98% test accuracy, ensembles added) and the R split's meta-train / meta-test sizes.
PAPER_ZOO: dict[str, int] = {
    "n_models": 10_000,
    "epochs": 100,
    "pool_size": 60_000,
    "min_acc": 98,
    "n_kept": 8_582,
    "n_ensembles": 2_700,
    "n_final": 11_282,
    "n_train": 5_000,
    "n_test": 1_000,
}

# Table 2: random split, 5,000 training models, 100 queries (kennen-i: 1 query); class-balanced accuracy (%).
# Row name = "<method> <output>"; columns in REPORT_ORDER, plus the printed mean.
TABLE2: dict[str, dict[str, float]] = {
    name: dict(zip(REPORT_ORDER, values, strict=True)) | {"mean": mean}
    for name, values, mean in (
        ("chance", (25.0, 50.0, 50.0, 50.0, 33.3, 33.3, 12.5, 50.0, 33.3, 33.3, 33.3, 14.3), 34.9),
        ("kennen-o prob", (80.6, 94.6, 94.9, 84.6, 67.1, 77.3, 41.7, 54.0, 71.8, 50.4, 73.8, 90.0), 73.4),
        ("kennen-o top10", (63.7, 93.8, 90.8, 80.0, 63.0, 73.7, 44.1, 62.4, 65.3, 47.0, 66.2, 86.6), 69.7),
        ("kennen-o top1", (48.6, 80.0, 73.6, 64.0, 48.9, 63.1, 28.7, 52.8, 53.6, 41.9, 45.9, 51.4), 54.4),
        ("kennen-i top1", (43.5, 77.0, 94.8, 88.5, 54.5, 41.0, 32.3, 46.5, 45.7, 37.0, 42.6, 29.3), 52.7),
        ("kennen-io prob", (88.4, 95.8, 99.5, 97.7, 80.3, 80.2, 45.2, 60.2, 79.3, 54.3, 84.8, 95.6), 80.1),
    )
}
# Table 2's kennen-o rows by output type (Figure 4 right has no point values).
KENNEN_O_BY_OUTPUT: dict[str, float] = {out: TABLE2[f"kennen-o {out}"]["mean"] for out in ("prob", "top10", "top1")}
# Table 2's means of the three methods, best first (the order the paper reports: io > o > i).
METHOD_MEANS: dict[str, float] = {
    "kennen-io": TABLE2["kennen-io prob"]["mean"],
    "kennen-o": TABLE2["kennen-o prob"]["mean"],
    "kennen-i": TABLE2["kennen-i top1"]["mean"],
}

# Table 3: kennen-io relative average accuracy on the extrapolation splits (R = 100, chance = 0).
TABLE3_KENNEN_IO: dict[str, float] = {
    "e_conv": 92.1,
    "e_conv_fc": 80.7,
    "e_alg": 88.5,
    "e_alg_bs": 70.1,
    "e_size": 86.9,
}

# §7: kennen-o family accuracy (%) on the 19 pretrained ImageNet classifiers (chance 20%) by number of
# queries; 10 folds holding out one network per family, x 10 query draws.
FAMILY_PROBE: dict[int, float] = {100: 90.4, 1000: 94.8}
FAMILY_PROBE_SETUP: dict[str, int] = {"n_models": 19, "folds": 10, "draws": 10}

# Table 4: misclassification (%) of GAMAN adversarial examples; rows: generating family (within a family
# leave-one-out), "ens" one network of every family; columns: target family.
TABLE4: dict[str, dict[str, int]] = {
    "clean": {"squeezenet": 38, "vgg": 32, "vgg_bn": 28, "resnet": 30, "densenet": 29},
    "squeezenet": {"squeezenet": 64, "vgg": 49, "vgg_bn": 45, "resnet": 39, "densenet": 35},
    "vgg": {"squeezenet": 62, "vgg": 96, "vgg_bn": 96, "resnet": 57, "densenet": 52},
    "vgg_bn": {"squeezenet": 50, "vgg": 85, "vgg_bn": 95, "resnet": 47, "densenet": 44},
    "resnet": {"squeezenet": 64, "vgg": 72, "vgg_bn": 78, "resnet": 87, "densenet": 77},
    "densenet": {"squeezenet": 58, "vgg": 63, "vgg_bn": 70, "resnet": 76, "densenet": 90},
    "ens": {"squeezenet": 70, "vgg": 93, "vgg_bn": 93, "resnet": 75, "densenet": 80},
}
# Table 5: misclassification (%) by attack scenario. (Table 4's diagonal averages 86.4, not 86.2; the paper
# does not say why.)
TABLE5: dict[str, float] = {"white_box": 100.0, "true_family": 86.2, "predicted_family": 85.7, "all_families": 82.2}


def table4_diagonal_mean() -> float:
    """Mean of Table 4's within-family cells (86.4), to compare with ours."""
    families = [f for f in TABLE4 if f in TABLE4[f]]  # the rows that are also target columns
    return sum(TABLE4[f][f] for f in families) / len(families)
