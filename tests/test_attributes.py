import math

import pytest

from kennen.attributes import ATTRIBUTES, BY_KEY, KEYS, REPORT_ORDER, SAMPLED, mean_chance, n_par_class, size_of_split


def test_controllable_combinations_are_18144():
    assert math.prod(a.n_classes for a in SAMPLED) == 18_144
    assert [a.key for a in SAMPLED] == ["act", "drop", "pool", "ks", "n_conv", "n_fc", "alg", "bs", "split"]


def test_mean_chance_is_34_86_as_the_paper_tabulates_it():
    # The paper's Table 2 chance row (values to one decimal) averages to 34.86, printed as 34.9.
    table2_chance = {a.key: round(a.chance, 1) for a in ATTRIBUTES}
    assert round(sum(table2_chance.values()) / 12, 2) == 34.86
    # Unrounded, 1/#classes averages to 34.87; both are the paper's 34.9.
    assert round(mean_chance(), 2) == 34.87
    assert round(mean_chance(), 1) == 34.9


def test_twelve_attributes_with_table1_class_counts():
    counts = {a.key: a.n_classes for a in ATTRIBUTES}
    assert counts == {
        "act": 4,
        "drop": 2,
        "pool": 2,
        "ks": 2,
        "n_conv": 3,
        "n_fc": 3,
        "n_par": 8,
        "ens": 2,
        "alg": 3,
        "bs": 3,
        "split": 7,
        "size": 3,
    }
    assert sorted(REPORT_ORDER) == sorted(KEYS)


@pytest.mark.parametrize(("split", "size"), [("all", "all"), ("half_1", "half"), ("quarter_3", "quarter")])
def test_size_is_derived_from_split(split, size):
    assert size_of_split(split) == size
    assert size in BY_KEY["size"].values


@pytest.mark.parametrize(("n", "cls"), [(21_840, 14), (32_767, 14), (32_768, 15), (590_820, 19), (2_097_152, 21)])
def test_n_par_class_is_floor_log2(n, cls):
    assert n_par_class(n) == cls
