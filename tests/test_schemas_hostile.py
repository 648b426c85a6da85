"""Hostile inputs (kennen/schemas.py, kennen/config.py): stored outputs, metamodel files, metrics JSON,
shard weights and params out of bounds are each one line naming the file or key, never a traceback."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kennen import schemas
from kennen.errors import KennenError
from kennen.io import save_npz
from kennen.queries import load_outputs

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- outputs.npz ------------------------------------------------------------------------------------------------

# Four single models (ids 3, 5, 7, 9) and one ensemble of 5 and 7.
BOXES = [{"box": i, "kind": "single", "id": m, "members": str(m)} for i, m in enumerate((3, 5, 7, 9))]
BOXES.append({"box": 4, "kind": "ensemble", "id": 0, "members": "5;7"})


def _outputs(n_queries: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Valid outputs of BOXES: log-softmax rows, the ensemble the mean of its members'; distinct query ids."""
    logits = torch.from_numpy(np.random.default_rng(seed).normal(size=(4, n_queries, 10)) * 3)
    single = torch.log_softmax(logits, -1).float().numpy()
    outputs = np.concatenate([single, single[[1, 2]].mean(0, keepdims=True)])
    return outputs, np.arange(100, 100 + n_queries)


def _load(tmp_path: Path, outputs: np.ndarray, query_index: np.ndarray, boxes=BOXES) -> None:
    path = tmp_path / "outputs.npz"
    save_npz(path, outputs=outputs, query_index=query_index)
    load_outputs(path, boxes)


def _one_line(err: pytest.ExceptionInfo, *needles: str) -> str:
    text = str(err.value)
    assert "\n" not in text and "outputs.npz" in text, text
    for needle in needles:
        assert re.search(needle, text), text
    return text


def test_valid_outputs_load(tmp_path):
    _load(tmp_path, *_outputs())
    outputs, query_index = _outputs()
    save_npz(tmp_path / "o.npz", outputs=outputs, query_index=query_index)
    assert load_outputs(tmp_path / "o.npz")[0].shape == (5, 6, 10)  # no boxes table: rows only <= 0


@FAST
@given(pos=st.tuples(st.integers(0, 4), st.integers(0, 5), st.integers(0, 9)), value=st.sampled_from([np.nan, np.inf]))
def test_a_non_finite_value_anywhere_is_named(tmp_path, pos, value):
    outputs, query_index = _outputs()
    outputs[pos] = value
    with pytest.raises(KennenError) as err:
        _load(tmp_path, outputs, query_index)
    _one_line(err, re.escape(f"outputs[{pos[0]}, {pos[1]}, {pos[2]}] = ") + r"-?(nan|inf) is not finite")


@FAST
@given(pos=st.tuples(st.integers(0, 4), st.integers(0, 5), st.integers(0, 9)), value=st.floats(0.01, 1e30))
def test_a_positive_value_anywhere_is_not_a_log_probability(tmp_path, pos, value):
    outputs, query_index = _outputs()
    outputs[pos] = value
    with pytest.raises(KennenError) as err:
        _load(tmp_path, outputs, query_index)
    _one_line(err, re.escape(f"outputs[{pos[0]}, {pos[1]}, {pos[2]}] = ") + r".* > 0 is not a log-probability")


@FAST
@given(box=st.integers(0, 3), query=st.integers(0, 5), shift=st.floats(0.01, 50).map(lambda x: -x))
def test_rows_that_do_not_sum_to_one_are_refused(tmp_path, box, query, shift):
    outputs, query_index = _outputs()
    outputs[box, query] += shift  # still <= 0 everywhere, but sums to exp(shift) < 1
    with pytest.raises(KennenError) as err:
        _load(tmp_path, outputs, query_index)
    _one_line(err, re.escape(f"outputs[{box}, {query}] sums to probability"), "not 1")


def test_an_ensemble_row_must_be_its_members_mean(tmp_path):
    outputs, query_index = _outputs()
    outputs[4] = outputs[0]  # a valid log-softmax row, but not the mean of boxes 1 and 2
    with pytest.raises(KennenError) as err:
        _load(tmp_path, outputs, query_index)
    _one_line(err, r"outputs\[4, 0, \d\] = .*box 4 is the ensemble 5;7 whose mean there is")


@pytest.mark.parametrize(
    ("index", "message"),
    [
        ([100, -3, 102, 103, 104, 105], r"query_index\[1\] = -3 is negative"),
        ([100, 101, 10_000, 103, 104, 105], r"query_index\[2\] = 10000 is not below the 10000 test images"),
        ([100, 101, 102, 101, 104, 105], r"query_index\[3\] = 101 repeats query_index\[1\]"),
    ],
)
def test_query_indices_are_valid_and_distinct(tmp_path, index, message):
    outputs, _ = _outputs()
    with pytest.raises(KennenError) as err:
        _load(tmp_path, outputs, np.array(index))
    _one_line(err, message)


def test_check_cost_on_the_default_size_is_small():
    """~330 boxes x 1,000 queries x 10 classes (params.yaml's zoo and queries.n_max): well under a second."""
    rng = np.random.default_rng(0)
    outputs = torch.log_softmax(torch.from_numpy(rng.normal(size=(330, 1000, 10)).astype(np.float32)), -1).numpy()
    boxes = [{"box": i, "kind": "single", "id": i, "members": str(i)} for i in range(330)]
    start = time.perf_counter()
    schemas.check_outputs(Path("outputs.npz"), outputs, np.arange(1000), boxes)
    assert time.perf_counter() - start < 5.0
