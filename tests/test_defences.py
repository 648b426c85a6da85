"""Each output defence's definition (kennen/defences.py), its parsing, and the utility figures."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kennen.defences import (
    FLOOR,
    KINDS,
    NU,
    Defence,
    as_log,
    defend,
    parse_defence,
    probabilities,
    utility,
)
from kennen.errors import KennenError

P = np.array([[0.62, 0.2, 0.1, 0.05, 0.03, 0.0049, 0.0031, 0.001, 0.0005, 0.0005]])


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_round_keeps_d_decimals_without_renormalising():
    q = Defence("round", 2).apply(P)
    np.testing.assert_array_equal(q, [[0.62, 0.2, 0.1, 0.05, 0.03, 0.0, 0.0, 0.0, 0.0, 0.0]])
    assert Defence("round", 1).apply(P)[0, :3].tolist() == [0.6, 0.2, 0.1]


def test_topk_withholds_all_but_the_k_largest_and_breaks_ties_by_class():
    q = Defence("topk", 3).apply(P)
    np.testing.assert_array_equal(q[0], [0.62, 0.2, 0.1, 0, 0, 0, 0, 0, 0, 0])
    tie = np.array([[0.1] * 10])
    np.testing.assert_array_equal(np.flatnonzero(Defence("topk", 2).apply(tie)[0]), [0, 1])
    np.testing.assert_array_equal(Defence("topk", 10).apply(P), P)


def test_label_is_one_hot_and_reads_as_kennen_o_top1():
    import torch

    from kennen.metamodel.encode import encode

    q = Defence("label").apply(P)
    np.testing.assert_array_equal(q, [[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    logp = torch.from_numpy(np.log(P))
    np.testing.assert_array_equal(as_log(q), encode(logp, "top1").numpy())


def test_noise_is_seeded_gaussian_clipped_and_renormalised():
    q = Defence("noise", 0.1).apply(P, _rng(3))
    raw = np.clip(P + _rng(3).normal(0, 0.1, P.shape), 0, None)
    np.testing.assert_allclose(q, raw / raw.sum(-1, keepdims=True))
    assert (q >= 0).all() and np.allclose(q.sum(-1), 1)
    assert not np.allclose(q, Defence("noise", 0.1).apply(P, _rng(4)))
    with pytest.raises(ValueError, match="generator"):
        Defence("noise", 0.1).apply(P)


def test_temperature_is_softmax_of_log_p_over_t_and_keeps_the_label():
    q = Defence("temperature", 2.0).apply(P)
    want = np.sqrt(P) / np.sqrt(P).sum()
    np.testing.assert_allclose(q, want, rtol=1e-12)
    assert q.argmax() == P.argmax() and q.max() < P.max()  # T > 1 flattens
    assert Defence("temperature", 0.5).apply(P).max() > P.max()  # T < 1 sharpens


def test_reverse_sigmoid_follows_lee_et_al():
    beta, gamma = 0.5, 0.1
    c = np.clip(P, 1e-9, 1 - 1e-9)
    r = beta * (1 / (1 + ((1 - c) / c) ** gamma) - 0.5)  # sigmoid(gamma * logit(p)) = 1 / (1 + ((1-p)/p)^gamma)
    q = np.clip(P - r, 0, 1)
    np.testing.assert_allclose(Defence("reverse_sigmoid", beta).apply(P), q / q.sum(), rtol=1e-12)
    flat = Defence("reverse_sigmoid", 1.0).apply(P)
    assert flat.max() < 0.5 and flat[0, -1] > 0.05  # it lifts the smallest probabilities and flattens the top


def test_misinformation_leaves_confident_answers_and_shifts_unsure_ones():
    unsure = np.array([[0.3, 0.25, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02, 0.005, 0.005]])
    both = np.concatenate([P, unsure])
    q = Defence("misinformation", 0.5).apply(both, _rng(1))
    np.testing.assert_allclose(q[0], P[0], atol=1e-12)  # max p 0.62 > tau: alpha = sigmoid(-120) ~ 0
    shift = _rng(1).integers(1, 10, size=2)[1]
    np.testing.assert_allclose(q[1], np.roll(unsure[0], shift), atol=1e-12)  # max p 0.3 < tau: the shifted answer
    assert q[1].argmax() != unsure.argmax()
    a = 1 / (1 + np.exp(NU * (0.3 - 0.3)))  # at max p = tau the two are mixed half and half
    assert a == 0.5


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float64, (4, 10), elements=st.floats(-30, 5)),
    st.sampled_from(
        ["round:2", "topk:3", "label", "noise:0.2", "temperature:5", "reverse_sigmoid:1", "misinformation:0.9"]
    ),
)
def test_every_defence_answers_ten_non_negative_numbers_a_metamodel_can_read(logits, text):
    p = probabilities(logits)
    d = parse_defence(text)
    q = defend(d, p[None], 5)[0]
    assert q.shape == p.shape and (q >= 0).all() and np.isfinite(q).all()
    if d.name not in ("round", "topk", "label"):
        np.testing.assert_allclose(q.sum(-1), 1, rtol=1e-9)
    if KINDS[d.name].argmax_kept:
        assert (q.argmax(-1) == p.argmax(-1)).all()
    x = as_log(q)
    assert x.dtype == np.float32 and (x >= FLOOR).all() and (x <= 1e-6).all()


def test_randomised_defences_are_reproducible_per_box_and_setting():
    p = probabilities(np.random.default_rng(0).normal(size=(3, 4, 10)))
    d = Defence("noise", 0.05)
    np.testing.assert_array_equal(defend(d, p, 1), defend(d, p, 1))
    np.testing.assert_array_equal(defend(d, p[:2], 1), defend(d, p, 1)[:2])  # box i's draw is its own
    assert not np.array_equal(defend(d, p, 1), defend(d, p, 2))
    assert not np.array_equal(defend(d, p, 1), defend(Defence("noise", 0.06), p, 1))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("smooth:1", "unknown defence 'smooth'"),
        ("topk:11", r"k must be an integer in \[1, 10\], got 11"),
        ("topk:2.5", "integer"),
        ("round:0", "decimals"),
        ("noise:0", r"sigma must be in \(0, 1\]"),
        ("noise:-1", "sigma"),
        ("temperature:inf", "T must be"),
        ("temperature:nan", "T must be"),
        ("temperature", "needs a value"),
        ("label:1", "takes no value"),
        ("reverse_sigmoid:x", "must be a number"),
        ("misinformation:1.5", "tau"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_key(text, message):
    with pytest.raises(KennenError, match=message) as e:
        parse_defence(text, "defences.settings[3]")
    assert str(e.value).startswith("defences.settings[3]: ") and "\n" not in str(e.value)


def test_settings_print_as_they_parse():
    for text in ("none", "round:2", "topk:5", "label", "noise:0.05", "temperature:20", "reverse_sigmoid:0.3"):
        assert str(parse_defence(text)) == text


def test_utility_counts_agreement_accuracy_change_and_kl():
    p = np.array([[[0.7, 0.3] + [0.0] * 8, [0.4, 0.6] + [0.0] * 8]])  # one box, two queries
    labels = np.array([0, 0])
    same = utility(p, p, labels)
    assert same == {"agreement": 100.0, "acc_change": 0.0, "kl": 0.0}
    flipped = p[:, :, [1, 0, 2, 3, 4, 5, 6, 7, 8, 9]]
    u = utility(p, flipped, labels)
    assert u["agreement"] == 0.0 and u["acc_change"] == 0.0  # 1 of 2 right before and after
    kl = np.mean([0.7 * np.log(0.7 / 0.3) + 0.3 * np.log(0.3 / 0.7), 0.4 * np.log(0.4 / 0.6) + 0.6 * np.log(0.6 / 0.4)])
    assert u["kl"] == pytest.approx(kl, abs=1e-3)
    one_hot = utility(p, Defence("label").apply(p), labels)
    assert one_hot["agreement"] == 100.0 and one_hot["kl"] > 1  # withheld mass reads as 1e-6
