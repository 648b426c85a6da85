"""kennen-io (paper §5): kennen-o's MLP and its query images learned together.

    min_x min_theta  sum_a CE(m_theta([f(x_1), ..., f(x_n)])_a, y_a)     over training boxes f

The queries start as kennen-o's (the first ``n`` query images) and the MLP is
kennen-o's. Training follows a schedule of phases (``params.yaml``,
``kennen_io.schedule`` for the R split, ``kennen_io.e_schedule`` for the E
splits); the paper's is a 200-epoch MLP warm start, then 50 epochs of query
updates, 50 of MLP, 50 of queries, 50 of MLP (official ``sequence=['m', 200, 50, 50]``):

- ``metamodel`` phases train only the MLP, with kennen-o's optimiser (one
  optimiser, so Adam keeps its state across phases). The queries are fixed
  then and the zoo is in eval mode, so the boxes' outputs are computed once
  per phase: the same numbers the official code recomputes at every step.
- ``queries`` phases update only the images, with the official code's
  projected noisy step (``crafted.QueryStep``, batches of 10 boxes),
  backpropagating through the frozen MLP and the frozen zoo.

A query epoch costs a forward and a backward pass of every training box (and
every member of an ensemble box) on all ``n`` queries; the MLP's epochs are
nearly free. ``query_boxes`` caps the boxes a query epoch visits: a fresh
random draw of that many training boxes per epoch. That is our deviation from
the official code, which visits every box in every query epoch; it keeps the
paper's schedule (and its number of phases) at a fraction of the cost. Since
the cost and the number of steps are those of ``epochs * query_boxes / N``
full epochs, it is a rescaling of the epoch count, not a different optimiser.
Measured on a 200-model zoo (168 R training boxes, a quarter of them ensembles;
one core of the 2-core CPU): 0.074 s per box per query epoch, 12.4 s per full
query epoch, against 0.08 s per MLP epoch.

The E splits may run a shorter schedule (``e_schedule``), for the budget: their
queries then move less, so Table 3's relative accuracy compares a kennen-io
closer to kennen-o on the E split with the full one on R. So may the
cross-validation's folds and the all-box model (``cv_schedule``), for the same
reason: the R split keeps the paper's schedule as the protocol's row.

The outputs are log-probabilities (the paper's "score"), standardised with the
statistics of the warm start's features and kept fixed afterwards, so the MLP
sees the same scale while the queries move.

kennen-io against kennen-o: the MLP at the end of the first (warm start) phase,
evaluated on the initial queries, *is* kennen-o (``kennen_o.fit`` with the same
optimiser, epochs, features and seed gives the same model; a test checks it),
trained with kennen-io's seed. ``run_split`` predicts the test boxes with it
before any query moves, so ``gap_vs_o`` is a paired comparison on the same test
boxes that isolates what learning the queries adds. It is kennen-o as
``kennen_o.fit`` trains it, on ``prob`` outputs, with kennen-io's seed (base + 7)
and the first phase's epochs: not the ``kennen_o`` stage's headline model, which
has its own seeds (and whatever else ``kennen_o`` sets), so the two kennen-o
accuracies differ by seed-to-seed noise.

Cross-validation (ours, the headline): kennen-io is trained once per fold of
``data/splits/folds.json`` on the other folds' boxes, with ``cv_schedule``, and
predicts its own fold's boxes with its own learned queries, so every box of the zoo is
predicted once by a kennen-io that never saw its configuration (``kennen.metamodel.cv``);
the warm start of each fold gives kennen-o's out-of-fold predictions on the same boxes,
and ``cv_metrics`` pairs the two. The metamodel saved for ``kennen whiten`` is one more
task, trained on every box (``crafted.ALL_BOXES``): it learns from the most boxes, and the
folds measure how a kennen-io trained that way does on configurations it has not seen
(with a fifth fewer boxes, so if anything they understate it). An ensemble of the fold
models would be no better measured and would ask K times the queries of a black box.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from kennen import stats
from kennen.config import bounded, require
from kennen.data import STD
from kennen.metamodel import cv
from kennen.metamodel.calibration import logits_of
from kennen.metamodel.crafted import BoxZoo, QueryStep, ZooSource, to_pixels
from kennen.metamodel.kennen_o import KennenO, Optimiser, loss_fn, new_model, predict, targets, train_epochs
from kennen.metamodel.sweep import extrapolation_keys, extrapolation_row
from kennen.seeds import Purpose, derive

PHASES = ("metamodel", "queries")


@dataclass(frozen=True)
class Phase:
    """One phase of the schedule: what is trained, for how many passes over the training boxes."""

    train: str
    epochs: int = bounded(10_000)

    def check(self, where: str) -> None:
        require(self.train in PHASES, f"{where}.train", f"expected one of {', '.join(PHASES)}, got {self.train!r}")
        require(self.epochs >= 1, f"{where}.epochs", f"must be at least 1, got {self.epochs}")


PAPER_SCHEDULE = (
    Phase("metamodel", 200),
    Phase("queries", 50),
    Phase("metamodel", 50),
    Phase("queries", 50),
    Phase("metamodel", 50),
)


def _check_schedule(schedule: tuple[Phase, ...], key: str) -> None:
    require(bool(schedule), key, "needs at least one phase")
    require(
        schedule[0].train == "metamodel",
        key,
        "must start with a metamodel phase (the MLP warm start that fixes the input scale)",
    )


@dataclass(frozen=True)
class KennenIOParams:
    """``kennen_io`` section of params.yaml."""

    n_queries: int = bounded(10_000, 100)  # MNIST test images
    schedule: tuple[Phase, ...] = PAPER_SCHEDULE  # the R split's
    e_schedule: tuple[Phase, ...] | None = None  # the E splits'; None: the R split's
    cv_schedule: tuple[Phase, ...] | None = None  # the folds' and the all-box model's; None: the R split's
    # training boxes per query epoch (fresh draw each epoch); None: all (official)
    query_boxes: int | None = bounded(100_000, None)
    step: QueryStep = field(default_factory=QueryStep)
    splits: tuple[str, ...] = ("r",)  # the R split and any E splits of ``splits.extrapolation`` (Table 3)
    # metamodel seeds on the R split (the headline is the first; >= 2 adds the spread over seeds)
    seeds: int = bounded(100, 1)

    def check(self, where: str) -> None:
        require(self.n_queries >= 1, f"{where}.n_queries", f"must be at least 1, got {self.n_queries}")
        _check_schedule(self.schedule, f"{where}.schedule")
        for key in ("e_schedule", "cv_schedule"):
            if getattr(self, key) is not None:
                _check_schedule(getattr(self, key), f"{where}.{key}")
        if self.query_boxes is not None:
            require(
                self.query_boxes >= 1, f"{where}.query_boxes", f"must be at least 1 (or null), got {self.query_boxes}"
            )
        require("r" in self.splits, f"{where}.splits", "must include r (Table 2 and the reference for Table 3)")
        require(self.seeds >= 1, f"{where}.seeds", f"must be at least 1, got {self.seeds}")
        self.step.check(f"{where}.step")

    def schedule_for(self, split: str) -> tuple[Phase, ...]:
        """The schedule a split runs: ``e_schedule`` for an E split (a name of ``splits`` other than ``r``),
        ``cv_schedule`` for a fold or the all-box model, each falling back to the R split's ``schedule``."""
        if split in self.splits:
            chosen = self.e_schedule if split != "r" else None
        else:
            chosen = self.cv_schedule
        return chosen if chosen is not None else self.schedule


def flat(log_probs: torch.Tensor) -> torch.Tensor:
    """Metamodel input [B, Q * 10] from the boxes' log-probabilities [B, Q, 10] (the ``prob`` encoding)."""
    return log_probs.reshape(len(log_probs), -1)


@dataclass(frozen=True)
class PhaseLog:
    """What one phase did, measured on the training boxes with exact (full-pass, noise-free) losses."""

    train: str
    epochs: int
    loss_before: float  # training loss (the summed cross-entropy) with the MLP and queries at the phase's start
    loss_after: float  # ... and at its end
    moved: float  # mean |pixel change| of the queries over the phase (pixels in [0, 1])
    seconds: float


@dataclass
class Trained:
    """A trained kennen-io: the MLP, its queries (normalised images [Q, 1, 28, 28]) and what each phase did."""

    model: KennenO
    queries: torch.Tensor
    phases: list[PhaseLog]


@torch.no_grad()
def _loss(model: KennenO, feats: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return round(float(loss_fn(model(feats), y)), 5)


def train(
    zoo: BoxZoo,
    boxes: Sequence[int],
    y: torch.Tensor,
    init: torch.Tensor,
    params: KennenIOParams,
    hidden: int,
    opt: Optimiser,
    seed: int,
    on_epoch: Callable[[str, int, float], None] | None = None,
    on_phase: Callable[[str, KennenO, torch.Tensor], None] | None = None,
    schedule: Sequence[Phase] | None = None,
) -> Trained:
    """kennen-io on ``boxes`` of ``zoo`` with labels ``y`` [N, 12], from query images ``init`` [>= n, 1, 28, 28].

    Args:
        schedule: the phases to run (default ``params.schedule``).
        on_epoch: ``on_epoch(phase, epoch, loss)`` after every epoch (loss: the epoch's running mean).
        on_phase: ``on_phase(phase, model, queries)`` after every phase; the first call sees the warm start.
    """
    x = init[: params.n_queries].clone()
    boxes = list(boxes)
    gen = torch.Generator().manual_seed(seed)
    model: KennenO | None = None
    optimiser = None
    feats: torch.Tensor | None = None  # the training boxes' features on the current queries
    logs: list[PhaseLog] = []
    for phase in schedule or params.schedule:
        start = time.perf_counter()
        if feats is None:
            feats = flat(zoo.outputs(x, boxes))
        if model is None:
            model = new_model(feats, hidden, seed)
            optimiser = opt.build(model.parameters())
        before, x_before = _loss(model, feats, y), x
        if phase.train == "metamodel":

            def report(epoch: int, loss: float) -> None:
                if on_epoch is not None:
                    on_epoch("metamodel", epoch, loss)

            train_epochs(model, optimiser, feats, y, opt.batch, phase.epochs, gen, report)
        else:
            x = _train_queries(zoo, boxes, y, x, model, params, phase.epochs, gen, on_epoch)
            feats = flat(zoo.outputs(x, boxes))
        moved = round(float((x - x_before).abs().mean()) * STD, 5)
        after = _loss(model, feats, y)
        seconds = round(time.perf_counter() - start, 2)
        logs.append(PhaseLog(phase.train, phase.epochs, before, loss_after=after, moved=moved, seconds=seconds))
        if on_phase is not None:
            on_phase(phase.train, model, x)
    return Trained(model, x, logs)


def _train_queries(
    zoo: BoxZoo,
    boxes: list[int],
    y: torch.Tensor,
    x: torch.Tensor,
    model: KennenO,
    params: KennenIOParams,
    epochs: int,
    gen: torch.Generator,
    on_epoch: Callable[[str, int, float], None] | None,
) -> torch.Tensor:
    step = params.step
    per_epoch = min(params.query_boxes or len(boxes), len(boxes))
    model.eval()
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    x = x.clone().requires_grad_(True)
    try:
        for epoch in range(epochs):
            total = 0.0
            for batch in torch.randperm(len(boxes), generator=gen)[:per_epoch].split(step.batch):
                loss = loss_fn(model(flat(zoo(x, [boxes[i] for i in batch.tolist()]))), y[batch])
                loss.backward()
                step.apply(x, gen)
                total += float(loss.detach()) * len(batch)
            if on_epoch is not None:
                on_epoch("queries", epoch, total / per_epoch)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return x.detach()


def evaluate(trained: Trained, zoo: BoxZoo, boxes: Sequence[int]) -> np.ndarray:
    """Predicted value indices [B, 12] for ``boxes`` of ``zoo`` from their log-probabilities on the queries."""
    return predict(trained.model, flat(zoo.outputs(trained.queries, list(boxes))))


def _features(zoo: BoxZoo, queries: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """The metamodel's input [len(rows), Q * 10] for ``rows`` of ``zoo`` (none: an empty batch)."""
    return flat(zoo.outputs(queries, rows)) if rows else torch.zeros(0, len(queries) * 10)


def run_split(
    name: str,
    source: ZooSource,
    splits: dict[str, dict[str, list[int]]],
    init: np.ndarray,
    params: KennenIOParams,
    hidden: int,
    opt: Optimiser,
    seed: int,
    schedule: Sequence[Phase] | None = None,
) -> dict[str, Any]:
    """Executor entry point: kennen-io trained on split ``name``'s training boxes, evaluated on its test boxes.

    Returns the MLP's weights, the learned queries (pixels), the test box ids with their labels and the
    predictions of kennen-io (``y_pred``, and its ``logits`` per attribute [N_test, K_a], which calibrate the
    saved metamodel) and of its warm start, i.e. kennen-o with this seed (``o_pred``); the training boxes'
    features on the learned queries (``train_features`` [N_train, Q * 10], the out-of-zoo reference), the
    loss curve and the per-phase log. A split without test boxes (the all-box model) returns empty
    predictions. ``schedule`` defaults to ``params.schedule``.
    """
    torch.set_num_threads(1)  # the same arithmetic on every executor (in-process, process pool, Dask)
    train_ids, test_ids = list(splits[name]["train"]), list(splits[name]["test"])
    ids = [*train_ids, *test_ids]
    zoo = source.load(ids)
    y = targets([source.boxes[i] for i in ids])
    n = len(train_ids)
    test = list(range(n, len(ids)))
    curve: list[dict[str, Any]] = []
    warm: dict[str, np.ndarray] = {}

    def on_epoch(phase: str, epoch: int, loss: float) -> None:
        curve.append({"step": len(curve), "phase": phase, "loss": round(loss, 5)})

    def on_phase(phase: str, model: KennenO, queries: torch.Tensor) -> None:
        if not warm:  # the warm start, before any query has moved: kennen-o
            warm["o_pred"] = predict(model, _features(zoo, queries, test))

    trained = train(
        zoo,
        range(n),
        y[:n],
        init=torch.from_numpy(init),
        params=params,
        hidden=hidden,
        opt=opt,
        seed=seed,
        on_epoch=on_epoch,
        on_phase=on_phase,
        schedule=schedule,
    )
    x_test = _features(zoo, trained.queries, test)
    return {
        "split": name,
        "seed": seed,
        "model": {k: v.detach().clone() for k, v in trained.model.state_dict().items()},
        "queries": to_pixels(trained.queries),
        "moved": round(float((trained.queries - torch.from_numpy(init[: params.n_queries])).abs().mean()) * STD, 5),
        "test": test_ids,
        "y_true": y[n:].numpy(),
        "y_pred": predict(trained.model, x_test),
        "logits": logits_of(trained.model, x_test),
        "o_pred": warm["o_pred"],
        "train_features": _features(zoo, trained.queries, list(range(n))),
        "curve": curve,
        "phases": [asdict(p) for p in trained.phases],
    }


def run_task(
    task: tuple[str, int],
    source: ZooSource,
    splits: dict[str, dict[str, list[int]]],
    init: np.ndarray,
    params: KennenIOParams,
    hidden: int,
    opt: Optimiser,
    seed: int,
) -> dict[str, Any]:
    """Executor entry point of the stage: ``task`` = (split, k), the k-th metamodel seed on that split.

    Every split runs ``params.schedule_for`` its name: the E splits ``e_schedule``, the folds and the all-box
    model ``cv_schedule``, the R split the paper's ``schedule``.
    """
    name, k = task
    out = run_split(
        name,
        source,
        splits,
        init=init,
        params=params,
        hidden=hidden,
        opt=opt,
        seed=derive(seed, Purpose.KENNEN_IO, k),
        schedule=params.schedule_for(name),
    )
    return out | {"replicate": k}


# An MLP epoch's cost per box, in query epochs' (forward and backward through the zoo) per box:
# 0.08 s for 168 boxes against 0.074 s per box (module docstring), about 1 / 150.
MLP_PER_QUERY = 1 / 150


def cost(params: KennenIOParams, split: str, n_train: int) -> float:
    """Relative cost of one task (boxes passed through the zoo), to start the longest first: every query
    epoch's ``query_boxes`` forward and backward, a forward of every training box after each query phase,
    and the MLP's epochs."""
    total = 0.0
    for phase in params.schedule_for(split):
        if phase.train == "queries":
            total += phase.epochs * min(params.query_boxes or n_train, n_train) + n_train / 3
        else:
            total += phase.epochs * n_train * MLP_PER_QUERY
    return total


def tasks(
    params: KennenIOParams, splits: dict[str, dict[str, list[int]]], runnable: Sequence[str]
) -> list[tuple[str, int]]:
    """The stage's tasks (split, metamodel seed), the longest first (``cost``), so that on a pool of two workers
    the last to finish idles least: every seed of the R split, one task for every other split in
    ``runnable`` (E splits, folds, the all-box model). ``splits`` gives each split's training boxes."""
    todo = [("r", k) for k in range(params.seeds)] + [(s, 0) for s in runnable if s != "r"]
    return sorted(todo, key=lambda t: -cost(params, t[0], len(splits[t[0]]["train"])))  # stable on ties


def r_metrics(result: dict[str, Any], units: Sequence[Any], seed: int) -> dict[str, float]:
    """The R split's metrics: accuracies with 95% intervals, the gap to kennen-o, how far the queries moved.

    The intervals resample the test boxes' configurations ``units`` with the bootstrap seed ``seed``
    (``kennen.stats``). ``gap_vs_o``: kennen-io's mean minus that of its warm start (kennen-o with
    kennen-io's seed) on the same test boxes, with the paired interval; ``query_phase<i>.*``: the training
    loss before and after the i-th query phase and the queries' mean pixel change in it; ``queries.moved``:
    start to end.
    """
    y, io, o = result["y_true"], result["y_pred"], result["o_pred"]
    m = stats.scored(y, io, units, seed=seed)
    m |= {f"gap_vs_o.{k}": v for k, v in stats.paired_difference(y, io, o, units, seed=seed).items()}
    warm = stats.scored(y, o, units, keys=None, seed=seed)
    m |= {
        "gap_vs_o.o_mean": warm["acc.mean"],
        "gap_vs_o.o_mean_low": warm["acc.mean_low"],
        "gap_vs_o.o_mean_high": warm["acc.mean_high"],
    }
    m["queries.moved"] = result["moved"]
    queries = [p for p in result["phases"] if p["train"] == "queries"]
    for i, p in enumerate(queries, 1):
        m |= {f"query_phase{i}.{k}": p[k] for k in ("loss_before", "loss_after", "moved")}
    return m


def seed_metrics(results: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Spread over the R split's metamodel seeds (empty for fewer than two): acc.mean and the gap to kennen-o.

    Each as its mean over seeds with the sd and 95% t-interval (``_sd``, ``_low``, ``_high``), named as in kennen_o.
    """
    if len(results) < 2:
        return {}
    means = [stats.accuracies(r["y_true"], r["y_pred"])["mean"] for r in results]
    gaps = [means[i] - stats.accuracies(r["y_true"], r["o_pred"])["mean"] for i, r in enumerate(results)]
    out = {"seeds.n": len(results)}
    for name, values in (("seeds.acc.mean", means), ("seeds.gap_vs_o.diff", gaps)):
        s = stats.seed_interval(values)
        out |= {name: s["mean"], f"{name}_sd": s["sd"], f"{name}_low": s["low"], f"{name}_high": s["high"]}
    return out


def out_of_fold(folds: Sequence[Sequence[int]], results: Sequence[dict[str, Any]], n_boxes: int) -> dict[str, Any]:
    """The folds' predictions put back in box order (``cv.out_of_fold``): kennen-io's (``y_pred`` [N, 12]),
    its warm start's, kennen-o (``o_pred``), and kennen-io's ``logits`` (per attribute [N, K_a]);
    ``results[f]`` is fold f's task."""

    def put(rows: list[np.ndarray]) -> np.ndarray:
        return cv.out_of_fold(folds, rows, n_boxes)

    n_attributes = len(results[0]["logits"])
    return {
        "y_pred": put([r["y_pred"] for r in results]),
        "o_pred": put([r["o_pred"] for r in results]),
        "logits": [put([r["logits"][i] for r in results]) for i in range(n_attributes)],
    }


def cv_metrics(y_true: np.ndarray, io: np.ndarray, o: np.ndarray, units: Sequence[Any], seed: int) -> dict[str, float]:
    """The ``cv`` block of kennen-io's out-of-fold predictions ``io`` (``cv.metrics``), the means of its warm
    start's ``o`` (``cv.o.acc.mean``, ``cv.o.acc_config.mean``, with intervals) and the paired gap between
    them over the same resampled configurations (``cv.gap_vs_o.acc.*``, ``cv.gap_vs_o.acc_config.*``)."""
    m = cv.metrics(y_true, io, units, seed)
    warm = cv.metrics(y_true, o, units, seed, prefix="cv.o")
    m |= {k: v for k, v in warm.items() if k.startswith(("cv.o.acc.mean", "cv.o.acc_config.mean"))}
    return m | cv.paired(y_true, io, o, units, seed, "cv.gap_vs_o")


def phase_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per phase of every task (``phases.csv``): split, metamodel seed, position, and the ``PhaseLog``."""
    return [
        {"split": r["split"], "seed": r["seed"], "phase": i} | p for r in results for i, p in enumerate(r["phases"])
    ]


def e_row(
    name: str,
    split: dict[str, list[int]],
    held: dict[str, Any],
    result: dict[str, Any],
    r: dict[str, float],
    units: Sequence[Any],
    seed: int,
) -> dict[str, Any]:
    """Table 3 row of an E split (``sweep.extrapolation_row``) plus the 95% interval of its mean, over its test
    boxes' configurations ``units``."""
    y, pred, keys = result["y_true"], result["y_pred"], extrapolation_keys(held)
    acc = {f"acc.{k}": v for k, v in stats.accuracies(y, pred).items()}
    interval = stats.bootstrap(y, pred, units, keys, seed=seed)
    return extrapolation_row(name, split, held, acc, r) | {
        "acc_mean_low": interval["acc.mean_low"],
        "acc_mean_high": interval["acc.mean_high"],
    }
