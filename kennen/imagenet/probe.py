"""The family probe's protocol (paper §7): kennen-o on output probabilities, held-out models, query draws.

For each fold, one architecture per family is drawn and one model of it is the
family's test model (exactly one per family, as in the paper). The other models
of the held-out architectures are left out of training too, so the probe never
sees the test architecture: it must generalise within the family, as the paper's
must (its 19 models are 19 different architectures). For each fold and each query
draw (``n`` query images drawn from the pool), an MLP of kennen-o's shape (two
hidden layers, one head over the families) is trained on the training models'
outputs and predicts the family of each test model.

Features: ``prob`` is the paper's, the log-probabilities as they are. ``sorted``
is ours: each query's log-probabilities sorted, which keeps the *shape* of the
output distribution and drops which class it favours. It is for models whose
class preferences are arbitrary, like the briefly trained offline surrogates,
and is reported next to ``prob``, never instead of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kennen import stats
from kennen.attributes import Attribute
from kennen.errors import KennenError
from kennen.io import read_csv
from kennen.limits import load_arrays
from kennen.metamodel.kennen_o import Optimiser, new_model, predict, train_epochs
from kennen.seeds import Purpose, StableRng, derive


def load_zoo(zoo: Path) -> tuple[np.ndarray, list[dict[str, str]]]:
    """``imagenet_zoo``'s outputs [models, pool, classes] and its table, each model's row in the same order."""
    try:
        outputs = load_arrays(zoo / "outputs.npz", ("outputs",))["outputs"]
    except (FileNotFoundError, OSError, ValueError, KeyError) as e:
        raise KennenError(f"{zoo / 'outputs.npz'}: cannot read the family zoo's outputs ({e})") from None
    rows = read_csv(zoo / "models.csv")
    if len(rows) != len(outputs):
        raise KennenError(
            f"{zoo}: {len(rows)} rows in models.csv for {len(outputs)} models' outputs (run `dvc repro imagenet_zoo`)"
        )
    return outputs, rows


def family_attribute(families: list[str]) -> Attribute:
    return Attribute("family", "family", "imagenet", tuple(families), False, tuple(families))


@dataclass(frozen=True)
class Fold:
    test: list[int]  # model indices, one per family, in family order
    train: list[int]


def folds(families: list[str], archs: list[str], fams: list[str], n_folds: int, seed: int) -> list[Fold]:
    """``n_folds`` folds over models described by their family ``fams[i]`` and architecture ``archs[i]``."""
    rng = StableRng(seed, Purpose.PROBE)
    out = []
    for _ in range(n_folds):
        test, held = [], set()
        for family in families:
            fam_archs = sorted({a for a, f in zip(archs, fams, strict=True) if f == family})
            arch = fam_archs[rng.below(len(fam_archs))]
            members = [i for i, a in enumerate(archs) if a == arch]
            test.append(members[rng.below(len(members))])
            held.add(arch)
        out.append(Fold(test, [i for i, a in enumerate(archs) if a not in held]))
    return out


def draw(pool: int, n: int, rng: StableRng) -> np.ndarray:
    perm = rng.permutation_prefix(pool)
    return np.array([next(perm) for _ in range(min(n, pool))], dtype=np.int64)


def fit_predict(
    x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, attr: Attribute, hidden: int, opt: Optimiser,
    seed: int,
) -> np.ndarray:  # fmt: skip
    """Train the family MLP; predicted family indices of ``x_test``.

    kennen-o's own training (``new_model``, ``train_epochs``) with one head over the families and no carve.
    """
    model = new_model(x_train, hidden, seed, (attr,))
    shuffle = torch.Generator().manual_seed(seed)
    train_epochs(model, opt.build(model.parameters()), x_train, y_train[:, None], opt.batch, opt.epochs, shuffle)
    return predict(model, x_test)[:, 0]


def features(outputs: np.ndarray, kind: str) -> torch.Tensor:
    """MLP input [M, Q * C] from log-probabilities [M, Q, C]."""
    x = np.sort(outputs, axis=-1) if kind == "sorted" else outputs
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(len(outputs), -1)


def run_probe_task(
    task: tuple[str, int, int, int],
    outputs: np.ndarray,
    labels: np.ndarray,
    fold_list: list[Fold],
    attr: Attribute,
    hidden: int,
    opt: Optimiser,
    seed: int,
) -> dict[str, Any]:
    """Executor entry point for (feature, fold, draw, n): the test models' true and predicted families."""
    torch.set_num_threads(1)
    kind, fold_i, draw_i, n = task
    fold = fold_list[fold_i]
    q = draw(outputs.shape[1], n, StableRng(seed, Purpose.PROBE, fold_i, draw_i))
    x = features(outputs[:, q], kind)
    y = torch.from_numpy(labels)
    pred = fit_predict(
        x[fold.train], y[fold.train], x[fold.test], attr, hidden, opt, derive(seed, Purpose.METAMODEL, fold_i, draw_i)
    )
    return {"feature": kind, "fold": fold_i, "draw": draw_i, "n": n, "true": labels[fold.test].tolist(),
            "pred": pred.tolist()}  # fmt: skip


def _try_interval(per_try: list[float], seed: int) -> tuple[float, float]:
    """95% interval of the mean accuracy over tries (folds x draws), resampling whole tries (``kennen.stats``).

    Every try holds out one model per family, so its test models are few; the tries share the zoo,
    so this is an interval over the protocol's own repetitions, not over new zoos.
    """
    a = np.asarray(per_try, dtype=float)
    lo, hi = stats.interval(lambda w: float((w * a).sum() / w.sum()), list(range(len(a))), seed=seed)
    return round(lo, 2), round(hi, 2)


def summarise(
    results: list[dict[str, Any]], families: list[str], seed: int = 0
) -> tuple[list[dict[str, Any]], dict[int, np.ndarray]]:
    """Per query count: overall and per-family accuracy (%) and a confusion matrix (rows: true family)."""
    rows, confusions = [], {}
    for n in sorted({r["n"] for r in results}):
        rs = [r for r in results if r["n"] == n]
        true = np.array([t for r in rs for t in r["true"]])
        pred = np.array([p for r in rs for p in r["pred"]])
        cm = np.zeros((len(families), len(families)), dtype=np.int64)
        np.add.at(cm, (true, pred), 1)
        per_try = [100.0 * float(np.mean(np.array(r["true"]) == np.array(r["pred"]))) for r in rs]
        low, high = _try_interval(per_try, seed)
        row = {"n_queries": n, "acc": round(float(np.mean(true == pred)) * 100, 2), "acc_low": low, "acc_high": high,
               "acc_std_over_tries": round(float(np.std(per_try)), 2), "tries": len(rs)}  # fmt: skip
        for i, f in enumerate(families):
            row[f"acc.{f}"] = round(100.0 * cm[i, i] / max(cm[i].sum(), 1), 2)
        rows.append(row)
        confusions[n] = cm
    return rows, confusions
