"""Decoding the most probable valid configuration (``kennen.metamodel.decode``)."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kennen.attributes import ATTRIBUTES, BY_KEY, KEYS, SPLITS, size_of_split
from kennen.metamodel.decode import ARCH_KEYS, decode_valid, is_valid, valid_architectures
from kennen.metamodel.kennen_o import targets
from kennen.queries import box_table
from kennen.zoo.ensembles import build_ensembles
from kennen.zoo.sample import Group, SampleParams, sample_zoo

REPO = Path(__file__).resolve().parents[1]
MAX_MEMBERS = 4  # params.yaml ensembles.max_members
COL = {k: i for i, k in enumerate(KEYS)}


def _random_log_probs(rng: np.random.Generator, n: int, p_zero: float = 0.0) -> list[np.ndarray]:
    """Per attribute [n, K] log-probabilities of random distributions, a share ``p_zero`` of entries exactly 0."""
    out = []
    for a in ATTRIBUTES:
        p = rng.dirichlet(np.full(a.n_classes, 0.5), size=n)
        p[rng.random(p.shape) < p_zero] = 0.0
        with np.errstate(divide="ignore"):
            out.append(np.log(p))
    return out


def _score(log_probs: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """Sum of the 12 log-probabilities of label rows [N, 12]."""
    return sum(lp[np.arange(len(labels)), labels[:, a]] for a, lp in enumerate(log_probs))


@functools.cache
def _all_valid_configurations(max_members: int) -> np.ndarray:
    """Every valid full configuration [C, 12], by brute force: architecture rows x alg x bs x split."""
    arch = np.unique(valid_architectures(max_members).labels, axis=0)
    rows = []
    for r, alg, bs, split in itertools.product(
        range(len(arch)), range(BY_KEY["alg"].n_classes), range(BY_KEY["bs"].n_classes), range(len(SPLITS))
    ):
        row = np.zeros(len(KEYS), dtype=np.int64)
        row[[COL[k] for k in ARCH_KEYS]] = arch[r]
        row[COL["alg"]], row[COL["bs"]], row[COL["split"]] = alg, bs, split
        row[COL["size"]] = BY_KEY["size"].index(size_of_split(SPLITS[split]))
        rows.append(row)
    return np.array(rows)


def _zoo_boxes(params: SampleParams, seed: int, max_members: int) -> list[dict]:
    """Box rows labelled by the zoo's own code path: sampled models, every one kept, every ensemble subset."""
    models = sample_zoo(params, seed)
    kept = [m["model_id"] for m in models]
    return box_table(models, kept, build_ensembles(models, kept, max_members))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40), p_zero=st.sampled_from([0.0, 0.3, 0.9]))
def test_decoding_only_returns_valid_configurations(seed, n, p_zero):
    log_probs = _random_log_probs(np.random.default_rng(seed), n, p_zero)
    labels = decode_valid(log_probs, MAX_MEMBERS)
    assert labels.shape == (n, 12) and labels.dtype == np.int64
    assert is_valid(labels, MAX_MEMBERS).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40))
def test_a_valid_per_head_argmax_is_returned_unchanged(seed, n):
    """Log-probabilities peaked on a valid configuration (plus noise) decode to that configuration."""
    rng = np.random.default_rng(seed)
    valid = _all_valid_configurations(MAX_MEMBERS)
    truth = valid[rng.integers(len(valid), size=n)]
    log_probs = []
    for a, lp in enumerate(_random_log_probs(rng, n)):
        lp[np.arange(n), truth[:, a]] = 1.0  # above every log-probability: the per-head argmax
        log_probs.append(lp)
    argmax = np.stack([lp.argmax(1) for lp in log_probs], axis=1)
    assert (argmax == truth).all()
    assert (decode_valid(log_probs, MAX_MEMBERS) == truth).all()


def test_per_head_argmax_that_is_valid_is_kept_on_random_rows():
    rng = np.random.default_rng(0)
    log_probs = _random_log_probs(rng, 3000)
    argmax = np.stack([lp.argmax(1) for lp in log_probs], axis=1)
    ok = is_valid(argmax, MAX_MEMBERS)
    assert 0 < ok.sum() < len(ok)  # both kinds occur, so the check means something
    assert (decode_valid(log_probs, MAX_MEMBERS)[ok] == argmax[ok]).all()


@pytest.mark.parametrize("max_members", [1, 2, MAX_MEMBERS, 7])
def test_decoded_score_is_the_best_over_all_valid_configurations(max_members):
    """Brute force over every valid full configuration (architectures x alg x bs x split) on a few rows."""
    rng = np.random.default_rng(max_members)
    log_probs = _random_log_probs(rng, 6, p_zero=0.2)
    decoded = decode_valid(log_probs, max_members)
    configs = _all_valid_configurations(max_members)
    for i in range(6):
        row = [lp[i : i + 1].repeat(len(configs), 0) for lp in log_probs]
        best = _score(row, configs).max()
        got = _score([lp[i : i + 1] for lp in log_probs], decoded[i : i + 1])[0]
        assert got == best
        assert np.isfinite(best) == np.isfinite(got)


def test_decode_is_fast_on_thousands_of_boxes():
    import time

    log_probs = _random_log_probs(np.random.default_rng(1), 5000)
    valid_architectures(MAX_MEMBERS)  # the table is built once per process; time the decoding itself
    start = time.perf_counter()
    labels = decode_valid(log_probs, MAX_MEMBERS)
    assert time.perf_counter() - start < 1.0
    assert is_valid(labels, MAX_MEMBERS).all()


def test_minus_infinity_and_all_zero_heads_give_valid_best_answers_without_nans():
    rng = np.random.default_rng(2)
    log_probs = _random_log_probs(rng, 30, p_zero=0.5)
    log_probs[COL["n_par"]][:5] = -np.inf  # probability 0 everywhere: every configuration scores -inf
    log_probs[COL["size"]][5:10] = -np.inf
    labels = decode_valid(log_probs, MAX_MEMBERS)
    assert is_valid(labels, MAX_MEMBERS).all()
    scores = _score(log_probs, labels)
    assert not np.isnan(scores).any()
    assert np.isneginf(scores[:10]).all()
    configs = _all_valid_configurations(MAX_MEMBERS)
    for i in range(10, 30):
        best = _score([lp[i : i + 1].repeat(len(configs), 0) for lp in log_probs], configs).max()
        assert scores[i] == best  # -inf only where every valid configuration has probability 0


def test_a_forbidden_class_is_avoided_when_it_has_probability_zero():
    """n_par 14 given probability 0: the decoder never names it, even where its head's argmax would."""
    log_probs = _random_log_probs(np.random.default_rng(3), 200)
    log_probs[COL["n_par"]][:, 0] = -np.inf
    assert (decode_valid(log_probs, MAX_MEMBERS)[:, COL["n_par"]] != 0).all()


def test_wrong_shapes_are_refused():
    log_probs = _random_log_probs(np.random.default_rng(4), 3)
    with pytest.raises(ValueError, match="expected 12"):
        decode_valid(log_probs[:11], MAX_MEMBERS)
    log_probs[COL["bs"]] = log_probs[COL["bs"]][:, :2]
    with pytest.raises(ValueError, match="log_probs for bs"):
        decode_valid(log_probs, MAX_MEMBERS)
    with pytest.raises(ValueError, match="max_members"):
        valid_architectures(0)


def test_invalid_rows_are_recognised():
    valid = _all_valid_configurations(MAX_MEMBERS)[:5]
    assert is_valid(valid, MAX_MEMBERS).all()
    bad_size = valid.copy()
    bad_size[:, COL["split"]] = SPLITS.index("all")
    bad_size[:, COL["size"]] = BY_KEY["size"].index("half")
    out_of_range = valid.copy()
    out_of_range[:, COL["bs"]] = 3
    single_ens = valid.copy()
    single_ens[:, COL["n_par"]] = BY_KEY["n_par"].index(21)  # no single network and no pair reaches 2^21
    single_ens[:, COL["ens"]] = 0
    for rows in (bad_size, out_of_range, single_ens):
        assert not is_valid(rows, MAX_MEMBERS).any()


def test_the_table_is_exactly_the_architectures_the_zoo_labels():
    """Every architecture with max_members seeds, every ensemble subset, labelled by the zoo's own code
    (sample_zoo, build_ensembles, box_table, kennen_o.targets): each box is valid, and the table
    holds no architecture row the zoo cannot produce."""
    space = {"alg": ("adam",), "bs": (128,), "split": ("half_1",)}
    n_arch = np.prod([BY_KEY[k].n_classes for k in ("act", "drop", "pool", "ks", "n_conv", "n_fc")])
    params = SampleParams(n_models=int(n_arch) * MAX_MEMBERS, groups=(Group(int(n_arch), MAX_MEMBERS),), space=space)
    boxes = _zoo_boxes(params, seed=5, max_members=MAX_MEMBERS)
    labels = targets(boxes).numpy()
    assert is_valid(labels, MAX_MEMBERS).all()
    zoo_rows = {tuple(r) for r in labels[:, [COL[k] for k in ARCH_KEYS]]}
    table = valid_architectures(MAX_MEMBERS)
    assert zoo_rows == {tuple(r) for r in table.labels}
    assert sorted(set(table.members.tolist())) == [1, 2, 3, 4]


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_boxes_of_a_paper_shaped_zoo_are_valid(seed):
    """The default profile's shape (pairs, and 4-member groups for n_par 17 and 21), every attribute free."""
    params = SampleParams(n_models=150, groups=(Group(30, 2), Group(2, 4, 17), Group(2, 4, 21)))
    labels = targets(_zoo_boxes(params, seed, MAX_MEMBERS)).numpy()
    assert is_valid(labels, MAX_MEMBERS).all()


def test_the_pipelines_boxes_are_valid():
    """The boxes the queries stage wrote, when this checkout has them."""
    from kennen.config import load_params, section
    from kennen.queries import read_boxes
    from kennen.zoo.ensembles import EnsembleParams

    path = REPO / "data" / "queries" / "boxes.csv"
    if not path.exists():
        pytest.skip(f"{path} absent (run the pipeline)")
    max_members = section(EnsembleParams, load_params(REPO / "params.yaml"), "ensembles").max_members
    labels = targets(read_boxes(path)).numpy()
    assert is_valid(labels, max_members).all()
