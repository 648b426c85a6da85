import pytest
import torch

from kennen.metamodel.encode import FLOOR, OUTPUT_TYPES, encode

# One query's log-probabilities: class 3 most likely, then 7, then 0, ...; class 5 least likely.
LOGP = torch.log_softmax(torch.tensor([[2.0, -1.0, -2.0, 5.0, -3.0, -9.0, -0.5, 4.0, -4.0, -6.0]]), -1)


def test_prob_is_the_log_probabilities():
    assert torch.equal(encode(LOGP, "prob"), LOGP)


def test_top1_is_a_single_label():
    expected = torch.full((1, 10), FLOOR)
    expected[0, 3] = 0.0
    assert torch.equal(encode(LOGP, "top1"), expected)


def test_top3_ranks_decay_linearly_in_log_space():
    expected = torch.full((1, 10), FLOOR)
    expected[0, 3], expected[0, 7], expected[0, 0] = 0.0, -30.0, -60.0  # -90 * r / k for r = 0, 1, 2
    torch.testing.assert_close(encode(LOGP, "top3"), expected)


def test_top10_is_the_full_ranking():
    out = encode(LOGP, "top10")[0]
    ranking = LOGP[0].argsort(descending=True)
    torch.testing.assert_close(out[ranking], -9.0 * torch.arange(10.0))


def test_bottom1_marks_the_least_likely_class():
    expected = torch.full((1, 10), FLOOR)
    expected[0, 5] = 0.0
    assert torch.equal(encode(LOGP, "bottom1"), expected)


@pytest.mark.parametrize("output", OUTPUT_TYPES)
def test_every_encoding_keeps_the_shape_and_depends_only_on_what_it_reveals(output):
    batch = torch.log_softmax(torch.randn(4, 7, 10), -1)
    out = encode(batch, output)
    assert out.shape == batch.shape
    if output != "prob":
        # Ranking encodings reveal only the order: a monotone transform of the scores changes nothing.
        assert torch.equal(encode(torch.log_softmax(3 * batch, -1), output), out)


def test_unknown_output_type():
    with pytest.raises(ValueError, match="unknown output type 'top11'"):
        encode(LOGP, "top11")
