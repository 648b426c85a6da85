"""Stage ``levers``: what each way of using the zoo's boxes better adds to kennen-o, in the folds (ours).

A lever is one choice beside the paper's recipe (an MLP reading the first 100 of the stored random
queries, one argmax per attribute head):

- the metamodel family (``levers.families``): ``mlp``, kennen-o's MLP as the ``kennen_o`` stage trains it
  (``kennen_o.hidden`` units, its optimiser and early stopping); ``mlp_small``, the same with
  ``levers.small_hidden`` units (MNTD's meta-classifier has 20); ``logreg``, ``pca_logreg`` (on the first
  ``levers.pca_dim`` principal components), ``centroid`` and ``knn`` (``levers.knn_k`` neighbours), from
  ``kennen.metamodel.baselines``;
- the queries, ``levers.n_queries`` of them: ``first``, the first n of the random draw (the paper's), or
  ``greedy``, chosen on the training fold's boxes only (``kennen.metamodel.select``, ``levers.ridge``);
- the answer: ``argmax`` per head (the paper's), or ``valid``, the most probable configuration of Table 1
  (``kennen.metamodel.decode``; ``n_par`` follows from the architecture and the ensemble's size, ``size``
  from ``split``).

Every combination is trained in every fold of ``data/splits/folds.json``, the folds kennen-o, kennen-i,
kennen-io, the sweeps and the defences share, so every box is predicted once, out of fold, and every row is
paired with the reference row ``mlp.q<kennen_o.n_queries>.first.argmax`` (``mlp.q100.first.argmax``): kennen-o
as the ``kennen_o`` stage trains it (same boxes, features, seed and early stopping, so the same predictions as
its ``cv_predictions.csv``).
Writes:

- ``--metrics``: per row ``<row>.acc_config.mean`` with ``_low``/``_high`` (each configuration counts
  once; 95% intervals resample configurations), ``<row>.acc.mean`` (every box counts once), ``<row>.gap.*``
  (``diff``, ``low``, ``high``, ``beyond_noise``: the row minus the reference over configurations, paired),
  ``<row>.valid`` (percent of boxes whose answers are a configuration of Table 1); ``reference``,
  ``n_boxes``, ``n_configs``, ``n_folds``;
- ``--table``: the same as CSV, a row per lever, for the results page.

The transfer stage's foreign boxes are not scored here: their outputs on the 1,000 candidate queries are
not stored, and greedy queries need them.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from kennen import stats
from kennen.attributes import ATTRIBUTES
from kennen.config import base_seed, bounded, load_params, require, section
from kennen.errors import KennenError
from kennen.io import write_csv, write_json
from kennen.metamodel import baselines
from kennen.metamodel.cv import out_of_fold, units_of
from kennen.metamodel.decode import decode_valid, is_valid
from kennen.metamodel.kennen_o import KennenOParams, configs, features, model_seed, targets
from kennen.metamodel.runs import Job, run_jobs
from kennen.metamodel.select import select_queries
from kennen.parallel import run_tasks
from kennen.queries import load_outputs, read_boxes
from kennen.splits import fold_split, read_folds
from kennen.zoo.ensembles import EnsembleParams
from stages._common import parser, run

log = logging.getLogger("kennen.levers")
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


def _rows(
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


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    for name in ("outputs", "boxes", "splits", "metrics", "table"):
        p.add_argument(f"--{name}", required=True)

    def body(a) -> None:
        params = load_params(a.params)
        lp = section(LeversParams, params, "levers")
        kp = section(KennenOParams, params, "kennen_o")
        max_members = section(EnsembleParams, params, "ensembles").max_members
        seed = base_seed(params)
        hint = f"must hold kennen_o.n_queries ({kp.n_queries}), the reference row's budget"
        require(kp.n_queries in lp.n_queries, "levers.n_queries", hint)
        boxes = read_boxes(Path(a.boxes))
        outputs, _ = load_outputs(Path(a.outputs), boxes)
        folds = read_folds(Path(a.splits), boxes)
        y = targets(boxes).numpy()
        sets = query_sets(outputs, y, folds, lp)
        log_probs = log_probabilities(outputs, boxes, folds, sets, lp, kp, seed)
        reference = f"mlp.q{kp.n_queries}.first.argmax"
        rows, metrics = _rows(log_probs, y, units_of(boxes), reference, max_members, seed)
        rows.sort(key=lambda r: -r["mean"])
        for r in rows[:5]:
            log.info("%s: %.1f [%.1f, %.1f]", r["lever"], r["mean"], r["mean_low"], r["mean_high"])
        write_csv(a.table, rows, list(rows[0]))
        write_json(a.metrics, metrics | {"n_folds": len(folds)})

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
