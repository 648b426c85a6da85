"""kennen.metamodel.select: greedy query selection on the training boxes only."""

from __future__ import annotations

import numpy as np
import pytest

from kennen.metamodel.select import select_queries


def _zoo(n_boxes: int = 120, n_queries: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Log-probability-like outputs [N, Q, 10] with a little signal on a few attributes, labels [N, 12]."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=(n_boxes, 12))
    x = rng.normal(size=(n_boxes, n_queries, 10))
    x[:, :10, 0] += 2.0 * y[:, :10]  # query a tells about attribute a
    return x, y


def _planted(n_boxes: int = 150, n_noise: int = 40, seed: int = 1) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Two attributes; query ``best`` separates attribute 0 strongly, ``copy`` is ``best`` again (tiny noise),
    ``other`` separates attribute 1 less strongly, every other query is noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=(n_boxes, 2))
    x = rng.normal(size=(n_boxes, n_noise + 3, 10))
    best, copy, other = 7, 23, 31
    x[:, best, :3] += 3.0 * y[:, :1]
    x[:, copy] = x[:, best] + 1e-3 * rng.normal(size=(n_boxes, 10))
    x[:, other, :3] += 1.5 * y[:, 1:2]
    return x, y, {"best": best, "copy": copy, "other": other}


def test_selection_reads_the_training_fold_only():
    x, y = _zoo()
    train, test = np.arange(0, 90), np.arange(90, 120)
    first = select_queries(x[train], y[train], 8)
    x_changed = x.copy()
    x_changed[test] = np.random.default_rng(5).normal(scale=10.0, size=x_changed[test].shape)
    assert np.array_equal(select_queries(x_changed[train], y[train], 8), first)
    # A training box does enter: giving the training boxes other outputs changes the choice.
    x_changed[train] = np.random.default_rng(6).normal(size=x_changed[train].shape)
    assert not np.array_equal(select_queries(x_changed[train], y[train], 8), first)


def test_greedy_takes_the_informative_queries_and_not_the_copy_of_the_best():
    x, y, q = _planted()
    chosen = select_queries(x, y, 3)
    assert chosen[0] in (q["best"], q["copy"])
    # Given the best, its copy adds nothing: the query for the other attribute comes second ...
    assert chosen[1] == q["other"]
    # ... though on its own the copy outscores it, so a top-k ranking would have taken the copy second.
    alone = np.delete(x, chosen[0], axis=1)
    copy = q["copy"] if chosen[0] == q["best"] else q["best"]
    assert select_queries(alone, y, 1)[0] == copy - (copy > chosen[0])


def test_returns_n_distinct_indices_in_range_deterministically_with_nested_prefixes():
    x, y = _zoo()
    chosen = select_queries(x, y, 25)
    assert chosen.dtype == np.int64 and chosen.shape == (25,)
    assert len(set(chosen.tolist())) == 25 and chosen.min() >= 0 and chosen.max() < x.shape[1]
    assert np.array_equal(select_queries(x, y, 25), chosen)
    assert np.array_equal(select_queries(x, y, 10), chosen[:10])  # greedy: the choice of 10 begins that of 25
    # The planted queries come early (not all first: over 12 attributes and 120 boxes a noise query's
    # in-sample fit adds up to as much as one attribute's signal).
    assert len(set(chosen[:10].tolist()) & set(range(10))) >= 7
    assert select_queries(x, y, 0).shape == (0,)
    assert len(set(select_queries(x, y, x.shape[1]).tolist())) == x.shape[1]  # all of them, no repeats


def test_any_subset_of_attributes_and_weights_steer_the_choice():
    x, y = _zoo()
    assert select_queries(x, y[:, [4]], 1)[0] == 4  # attribute 4 alone: its query
    assert select_queries(x, y[:, [2, 6]], 1, weights=[0.0, 1.0])[0] == 6
    # A constant attribute and constant query columns are no trouble.
    y_const = y.copy()
    y_const[:, 0] = 1
    x_const = x.copy()
    x_const[:, 3] = 0.5
    chosen = select_queries(x_const, y_const, 5)
    assert 3 not in chosen and np.all(np.isfinite(chosen))


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.zeros((4, 3, 10)), np.zeros((4, 2), int), 4), "n must be"),
        ((np.zeros((4, 3, 10)), np.zeros((5, 2), int), 1), "same N"),
        ((np.zeros((4, 3)), np.zeros((4, 2), int), 1), "same N"),
    ],
)
def test_bad_arguments_are_one_line_errors(args, match):
    with pytest.raises(ValueError, match=match):
        select_queries(*args)
    with pytest.raises(ValueError, match="ridge"):
        select_queries(np.zeros((4, 3, 10)), np.zeros((4, 2), int), 1, ridge=0.0)
