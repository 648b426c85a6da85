"""The baselines beside kennen-o's MLP: predictions and class probabilities on the same features."""

from __future__ import annotations

import numpy as np
import pytest
import threadpoolctl

from kennen.metamodel import baselines


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.stack([rng.integers(0, 3, 60), rng.integers(0, 2, 60), np.zeros(60, dtype=np.int64)], 1)
    x = rng.normal(size=(60, 8)) + 2.0 * y[:, :1]  # the first attribute is readable, the second is noise
    return x[:40], y[:40], x[40:]


@pytest.mark.parametrize("kind", baselines.FAMILIES)
def test_fit_proba_gives_a_distribution_over_every_label(kind):
    x, y, x_test = _data()
    n_classes = (4, 2, 3)  # label 3 of the first attribute never occurs among the training boxes
    probs = baselines.fit_proba(kind, x, y, x_test, n_classes, pca_dim=4, k=3)
    assert [p.shape for p in probs] == [(20, 4), (20, 2), (20, 3)]
    for p in probs:
        assert np.allclose(p.sum(1), 1) and (p >= 0).all()
    assert (probs[0][:, 3] == 0).all()  # an unseen label gets no mass
    assert (probs[2][:, 0] == 1).all()  # one value among the training boxes: that value, surely


def test_fit_proba_agrees_with_fit_predict():
    x, y, x_test = _data(1)
    for kind in baselines.FAMILIES:
        probs = baselines.fit_proba(kind, x, y, x_test, (3, 2, 1), pca_dim=4)
        expected = np.stack([baselines._model(kind, 4).fit(x, y[:, a]).predict(x_test) for a in range(2)], 1)
        assert (np.stack([p.argmax(1) for p in probs[:2]], 1) == expected).all(), kind
        if kind in baselines.BASELINES:
            assert (np.stack([p.argmax(1) for p in probs], 1) == baselines.fit_predict(kind, x, y, x_test)).all()


def test_nearest_centroid_with_one_box_per_class():
    x, y, x_test = np.array([[0.0, 0.0], [4.0, 4.0]]), np.array([[0], [1]]), np.array([[1.0, 0.0], [3.0, 5.0]])
    (p,) = baselines.fit_proba("centroid", x, y, x_test, (2,))
    assert p.argmax(1).tolist() == [0, 1] and np.isfinite(p).all()


def test_parallel_tasks_run_on_one_blas_thread(monkeypatch):
    seen = []

    def spy(*args, **kwargs):
        seen.append({info["num_threads"] for info in threadpoolctl.threadpool_info()})
        return "done"

    monkeypatch.setattr(baselines, "fit_proba", spy)
    monkeypatch.setattr(baselines, "fit_predict", spy)
    x, y, x_test = _data(2)
    assert baselines.proba_task(("id", "logreg", x, y, x_test, (3, 2, 1), 50, 5)) == "done"
    assert baselines.task(("id", "logreg", x, y, x_test)) == "done"
    assert seen == [{1}, {1}]


def test_unknown_family_is_named():
    x, y, x_test = _data()
    with pytest.raises(ValueError, match="unknown baseline 'forest'"):
        baselines.fit_proba("forest", x, y, x_test, (3, 2, 1))
