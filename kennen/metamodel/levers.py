"""What each way of using the zoo's boxes better adds to kennen-o, in the folds (ours): the ``levers`` stage.

A lever is a metamodel family, a way to pick the queries, or a way to read the answers
(``stages/levers.py`` describes each). :func:`query_sets` picks the queries of every fold on its
training boxes only, :func:`log_probabilities` trains every (family, selection, budget) in every fold
and puts the test folds' log-probabilities back in box order, :func:`lever_rows` scores every
combination and pairs it with the reference row on the same boxes.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from kennen import stats
from kennen.attributes import ATTRIBUTES
from kennen.config import bounded, require
from kennen.errors import KennenError
from kennen.metamodel import baselines
from kennen.metamodel.cv import out_of_fold
from kennen.metamodel.decode import decode_valid, is_valid
from kennen.metamodel.kennen_o import KennenOParams, configs, features, model_seed, targets
from kennen.metamodel.runs import Job, run_jobs
from kennen.metamodel.select import select_queries
from kennen.parallel import run_tasks
from kennen.splits import fold_split

MLPS = ("mlp", "mlp_small")
FAMILIES = (*MLPS, *baselines.FAMILIES)
SELECTIONS = ("first", "greedy")
DECODES = ("argmax", "valid")
N_CLASSES = tuple(a.n_classes for a in ATTRIBUTES)


@dataclasses.dataclass(frozen=True)
class LeversParams:
    """``levers`` section of params.yaml."""

    n_queries: tuple[int, ...] = bounded(10_000, (10, 100))
    families: tuple[str, ...] = FAMILIES
    small_hidden: int = bounded(10_000, 20)
    pca_dim: int = bounded(10_000, 50)
    knn_k: int = bounded(10_000, 5)
    ridge: float = bounded(1e6, 1.0)

    def check(self, where: str) -> None:
        require(len(self.n_queries) >= 1, f"{where}.n_queries", "give at least one query budget")
        require(min(self.n_queries) >= 1, f"{where}.n_queries", f"each must be at least 1, got {self.n_queries}")
        for key in ("n_queries", "families"):
            values = getattr(self, key)
            require(len(set(values)) == len(values), f"{where}.{key}", f"has a repeated value: {list(values)}")
        unknown = [f for f in self.families if f not in FAMILIES]
        require(not unknown, f"{where}.families", f"{unknown[:1]} is not in {', '.join(FAMILIES)}")
        require("mlp" in self.families, f"{where}.families", "must hold mlp, the reference row's family")
        for key in ("small_hidden", "pca_dim", "knn_k"):
            require(getattr(self, key) >= 1, f"{where}.{key}", f"must be at least 1, got {getattr(self, key)}")
        require(self.ridge > 0, f"{where}.ridge", f"must be positive, got {self.ridge}")


def query_sets(
    outputs: np.ndarray, y: np.ndarray, folds: list[list[int]], lp: LeversParams
) -> dict[tuple[str, int, int], np.ndarray]:
    """Query indices per (selection, n, fold). Greedy choices are nested (the first n of the largest)."""
    n_max = max(lp.n_queries)
    if n_max > outputs.shape[1]:
        raise KennenError(f"levers.n_queries: {n_max} exceeds the {outputs.shape[1]} stored queries (queries.n_max)")
    sets = {}
    for f in range(len(folds)):
        train = fold_split(folds, f)["train"]
        with threadpool_limits(1):  # one BLAS thread: near-tied gains must not depend on the machine's cores
            chosen = select_queries(outputs[train], y[train], n_max, ridge=lp.ridge)  # the training fold only
        for n in lp.n_queries:
            sets["first", n, f] = np.arange(n)
            sets["greedy", n, f] = chosen[:n]
    return sets


def log_probabilities(
    outputs: np.ndarray,
    boxes: list[dict[str, Any]],
    folds: list[list[int]],
    sets: dict[tuple[str, int, int], np.ndarray],
    lp: LeversParams,
    kp: KennenOParams,
    seed: int,
) -> dict[tuple[str, str, int], list[np.ndarray]]:
    """Out-of-fold class log-probabilities (per attribute [N, K_a]) of every (family, selection, n)."""
    y = targets(boxes)
    keys = [(fam, sel, n) for fam, sel, n in itertools.product(lp.families, SELECTIONS, lp.n_queries)]
    per_fold: dict[tuple[str, str, int, int], list[np.ndarray]] = {}
    mlp_jobs, mlp_keys, sk_jobs = [], [], []
    x_of = {key: features(outputs[:, idx], len(idx), kp.output) for key, idx in sets.items()}  # [N, 10 n] each
    for fam, sel, n in keys:
        for f in range(len(folds)):
            split = fold_split(folds, f)
            x = x_of[sel, n, f]
            train, test = split["train"], split["test"]
            if fam in MLPS:
                hidden = kp.hidden if fam == "mlp" else lp.small_hidden
                opt, stop = kp.optimisers[kp.optimiser], kp.early_stop
                groups = configs(boxes, train)
                mlp_jobs.append(
                    Job(x[train], y[train], x[test], hidden, opt, model_seed(seed), stop, groups=groups, logits=True)
                )
                mlp_keys.append((fam, sel, n, f))
            else:
                options = (N_CLASSES, lp.pca_dim, lp.knn_k)
                sk_jobs.append(((fam, sel, n, f), fam, x[train].numpy(), y[train].numpy(), x[test].numpy(), *options))
    for key, out in zip(mlp_keys, run_jobs(mlp_jobs), strict=True):
        per_fold[key] = [torch.log_softmax(torch.from_numpy(z), 1).numpy() for z in out["logits"]]
    for job, probs in run_tasks(baselines.proba_task, sk_jobs, len(sk_jobs)):
        with np.errstate(divide="ignore"):  # a probability of 0 is a log-probability of -inf: never chosen
            per_fold[job[0]] = [np.log(p) for p in probs]
    return {
        k: [out_of_fold(folds, [per_fold[(*k, f)][a] for f in range(len(folds))], len(boxes)) for a in range(12)]
        for k in keys
    }


def lever_rows(
    log_probs: dict[tuple[str, str, int], list[np.ndarray]],
    y: np.ndarray,
    units: list[Any],
    reference: str,
    max_members: int,
    seed: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Table rows and metrics of every lever, paired with the reference row."""
    preds = {}
    for (fam, sel, n), lq in log_probs.items():
        preds[f"{fam}.q{n}.{sel}.argmax"] = np.stack([q.argmax(1) for q in lq], 1)
        preds[f"{fam}.q{n}.{sel}.valid"] = decode_valid(lq, max_members)
    ref = preds[reference]
    rows, metrics = [], {"reference": reference, "n_boxes": len(y), "n_configs": len(set(map(str, units)))}
    for name, pred in preds.items():
        fam, q, sel, dec = name.split(".")
        over_configs = stats.scored(y, pred, units, per_config=True, seed=seed, prefix="acc_config")
        row = {"lever": name, "family": fam, "n_queries": int(q[1:]), "selection": sel, "decode": dec}
        row |= {k: over_configs[f"acc_config.{k}"] for k in ("mean", "mean_low", "mean_high")}
        row["acc_mean"] = stats.accuracies(y, pred, units=units)["mean"]
        gap = stats.paired_difference(y, pred, ref, units, per_config=True, seed=seed)
        row |= {f"gap_{k}": v for k, v in gap.items()}
        row["valid"] = round(100 * float(is_valid(pred, max_members).mean()), 2)
        rows.append(row)
        metrics |= {f"{name}.acc_config.{k}": row[k] for k in ("mean", "mean_low", "mean_high")}
        metrics |= {f"{name}.acc.mean": row["acc_mean"], f"{name}.valid": row["valid"]}
        metrics |= {f"{name}.gap.{k}": v for k, v in gap.items()}
    return rows, metrics
