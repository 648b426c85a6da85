"""How the metamodels' defaults were chosen: each candidate setting scored on a validation carve.

The candidates (as data, below) are the settings compared when the defaults were chosen:
kennen-o's optimiser (``kennen_o.optimisers``), kennen-i's query step (``kennen_i.step``) and
kennen-io's schedule and step (``kennen_io.step``). Each is trained on a by-configuration 80/20
carve of the R split's *training* boxes and scored (mean class-balanced accuracy) on the other
20%; the R test boxes are never read. The row marked ``is_default`` is the candidate that
params.yaml uses, so a changed default shows up here (and a default outside the candidates
is scored as an extra row). A method's candidates run as parallel tasks on the executor
(``kennen.parallel``); the ``choices`` stage writes one table per method.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kennen import data as mnist_data
from kennen.attributes import ATTRIBUTES
from kennen.config import base_seed, section
from kennen.errors import KennenError
from kennen.io import write_csv, write_json
from kennen.metamodel.crafted import ZooSource, draw_images
from kennen.metamodel.cv import units_of
from kennen.metamodel.kennen_i import KennenIParams, run_target
from kennen.metamodel.kennen_io import KennenIOParams, Phase, run_split
from kennen.metamodel.kennen_o import KennenOParams, Optimiser, accuracies, train_and_evaluate
from kennen.parallel import run_tasks
from kennen.queries import load_outputs, read_boxes
from kennen.seeds import Purpose, derive
from kennen.splits import SplitParams, random_split, read_split
from kennen.stats import bootstrap

log = logging.getLogger("kennen.choices")

METHODS = ("kennen_o", "kennen_i", "kennen_io")

# kennen-o's optimiser: the official code's setting, then Adam variants (README "Choosing kennen-o's optimiser").
KENNEN_O: dict[str, Optimiser] = {
    "official: SGD lr 1e-4, wd 1e-2": Optimiser("sgd", 1e-4, weight_decay=0.01),
    "Adam lr 1e-4": Optimiser("adam", 1e-4),
    "Adam lr 3e-4, 100 epochs": Optimiser("adam", 3e-4, epochs=100),
    "Adam lr 1e-3": Optimiser("adam", 1e-3),
    "Adam lr 1e-3, wd 1e-3": Optimiser("adam", 1e-3, weight_decay=1e-3),
}

# kennen-i's query step: (rule, lr); the official code's is (sgd, 0.1).
KENNEN_I: dict[str, tuple[str, float]] = {
    "official rule, lr 0.1": ("sgd", 0.1),
    "official rule, lr 1.0": ("sgd", 1.0),
    "signed steps, lr 0.01": ("sign", 0.01),
    "signed steps, lr 0.03": ("sign", 0.03),
}


@dataclass(frozen=True)
class IOCandidate:
    """A kennen-io candidate: a (shortened) schedule and the query step.

    ``paper_shape``: the schedule has the paper's shape (a long warm start, then queries and
    metamodel), shortened for the budget; the default row is the paper-shaped one with params' step.
    """

    schedule: tuple[Phase, ...]
    rule: str
    lr: float
    paper_shape: bool = False


def schedule(text: str) -> tuple[Phase, ...]:
    """``'m200,q4,m50'`` -> phases (m: metamodel epochs, q: query epochs)."""
    names = {"m": "metamodel", "q": "queries"}
    return tuple(Phase(names[part[0]], int(part[1:])) for part in text.split(","))


KENNEN_IO: dict[str, IOCandidate] = {
    "warm start only (= kennen-o, 250 MLP epochs)": IOCandidate(schedule("m250"), "sgd", 0.1),
    "metamodel 200, queries 4, metamodel 50; official rule, lr 0.1": IOCandidate(
        schedule("m200,q4,m50"), "sgd", 0.1, paper_shape=True
    ),
    "metamodel 200, queries 4, metamodel 50; signed steps, lr 0.01": IOCandidate(
        schedule("m200,q4,m50"), "sign", 0.01, paper_shape=True
    ),
    "metamodel 10, queries 2, metamodel 10, queries 2, metamodel 180; signed steps, lr 0.01": IOCandidate(
        schedule("m10,q2,m10,q2,m180"), "sign", 0.01
    ),
}


def validation_carve(boxes: list[dict[str, Any]], r_train: list[int], base: int) -> dict[str, list[int]]:
    """A by-configuration 80/20 carve of the R split's training boxes: {'train': ids, 'test': validation ids}.

    Only ``r_train`` is read: the R test boxes never enter. Seeded on ``Purpose.CHOICES``.
    """
    keep = set(r_train)
    val = random_split(
        [b for b in boxes if b["box"] in keep], SplitParams(test_fraction=0.2), derive(base, Purpose.CHOICES)
    )
    if not val["train"] or not val["test"]:
        raise KennenError(f"the R split's {len(keep)} training boxes are too few to carve a validation set from")
    return val


def _timed(job: Callable[[Any], dict[str, Any]], candidates: dict[str, Any], name: str) -> dict[str, Any]:
    """Executor task: score candidate ``name``, with its wall time."""
    start = time.perf_counter()
    return job(candidates[name]) | {"seconds": round(time.perf_counter() - start, 1)}


def _score(
    job: Callable[[Any], dict[str, Any]], candidates: dict[str, Any], is_default: Callable[[Any], bool]
) -> list[dict[str, Any]]:
    """One row per candidate, in the candidates' order; the candidates run as parallel executor tasks."""
    done = dict(run_tasks(functools.partial(_timed, job, candidates), list(candidates), len(candidates)))
    return [{"setting": n} | done[n] | {"is_default": is_default(c)} for n, c in candidates.items()]


def _validation(y_true: np.ndarray, y_pred: np.ndarray, units: list[Any], seed: int) -> dict[str, float]:
    """The validation mean with its 95% interval over the validation boxes' resampled configurations ``units``.

    Every candidate is resampled with the same seed, so their intervals come from the same resamples.
    """
    interval = bootstrap(y_true, y_pred, units, seed=seed)
    return {
        "validation_mean": round(accuracies(y_true, y_pred)["acc.mean"], 2),
        "validation_low": round(interval["acc.mean_low"], 2),
        "validation_high": round(interval["acc.mean_high"], 2),
    }


def _o_job(
    opt: Optimiser, outputs: np.ndarray, boxes: list[dict[str, Any]], val: dict[str, list[int]], kp: KennenOParams,
    base: int,
) -> dict[str, Any]:  # fmt: skip
    torch.set_num_threads(1)  # the same arithmetic on every executor, as kennen-i's and kennen-io's tasks
    r = train_and_evaluate(outputs, boxes, val, kp.n_queries, kp.output, kp.hidden, opt, base)
    return _validation(r.y_true, r.y_pred, units_of(boxes, val["test"]), base)


def kennen_o_rows(
    outputs: np.ndarray, boxes: list[dict[str, Any]], val: dict[str, list[int]], kp: KennenOParams, base: int
) -> list[dict[str, Any]]:
    """One row per optimiser candidate: {setting, validation_mean (and its interval), seconds, is_default}.

    Each runs its fixed epochs (no early stopping), with kennen_o's queries, output type and width.
    """
    chosen = kp.optimisers[kp.optimiser]
    cands = dict(KENNEN_O)
    if chosen not in cands.values():
        cands[f"params: kennen_o.optimisers.{kp.optimiser}"] = chosen
    job = functools.partial(_o_job, outputs=outputs, boxes=boxes, val=val, kp=kp, base=base)
    return _score(job, cands, lambda opt: opt == chosen)


def _i_job(
    step: tuple[str, float], source: ZooSource, val: dict[str, list[int]], init: np.ndarray, kp: KennenIParams,
    seed: int,
) -> dict[str, Any]:  # fmt: skip
    cand = dataclasses.replace(kp, step=dataclasses.replace(kp.step, rule=step[0], lr=step[1]))
    r = run_target(kp.target, source, val["train"], val["test"], init, cand, seed)
    return _validation(r["y_true"], r["y_pred"], units_of(source.boxes, val["test"]), seed)


def kennen_i_rows(
    source: ZooSource, mnist_test: np.ndarray, val: dict[str, list[int]], kp: KennenIParams, base: int
) -> list[dict[str, Any]]:
    """One row per (rule, lr) candidate: {setting, validation_mean (and its interval), seconds, is_default}.

    Each crafts ``kennen_i.epochs`` passes over the carve's training boxes, from the ``kennen_i``
    stage's starting images and seed, with its target, loss, noise and batch.
    """
    seed = derive(base, Purpose.KENNEN_I)
    init = mnist_data.normalise(mnist_test[draw_images(len(mnist_test), len(ATTRIBUTES), seed)])
    chosen = (kp.step.rule, kp.step.lr)
    cands = dict(KENNEN_I)
    if chosen not in cands.values():
        cands[f"params: {chosen[0]}, lr {chosen[1]}"] = chosen
    job = functools.partial(_i_job, source=source, val=val, init=init, kp=kp, seed=seed)
    return _score(job, cands, lambda step: step == chosen)


def _io_job(
    c: IOCandidate, source: ZooSource, val: dict[str, list[int]], init: np.ndarray, kp: KennenIOParams,
    ko: KennenOParams, seed: int,
) -> dict[str, Any]:  # fmt: skip
    cand = dataclasses.replace(kp, schedule=c.schedule, step=dataclasses.replace(kp.step, rule=c.rule, lr=c.lr))
    r = run_split("val", source, {"val": val}, init, cand, ko.hidden, ko.optimisers[ko.optimiser], seed)
    start = (init[: kp.n_queries] * mnist_data.STD + mnist_data.MEAN).clip(0, 1)
    moved = float(np.abs(r["queries"] - start).mean())
    units = units_of(source.boxes, val["test"])
    return _validation(r["y_true"], r["y_pred"], units, seed) | {"mean_pixel_change": round(moved, 4)}


def kennen_io_rows(
    source: ZooSource,
    mnist_test: np.ndarray,
    query_index: np.ndarray,
    val: dict[str, list[int]],
    kp: KennenIOParams,
    ko: KennenOParams,
    base: int,
) -> list[dict[str, Any]]:
    """One row per schedule-and-step candidate: {setting, validation_mean (and its interval), mean_pixel_change, seconds, is_default}.

    The queries start from the first ``kennen_io.n_queries`` query images (as in the ``kennen_io``
    stage); the MLP is kennen-o's (width, optimiser); ``kennen_io.query_boxes`` and the step's noise
    and batch are params'. The default row is the paper-shaped candidate with ``kennen_io.step``'s
    rule and lr (the full paper schedule of params is too long to run four times here).
    """
    seed = derive(base, Purpose.KENNEN_IO)
    init = mnist_data.normalise(mnist_test[query_index[: kp.n_queries]])
    chosen = (kp.step.rule, kp.step.lr)
    cands = dict(KENNEN_IO)
    if not any(c.paper_shape and (c.rule, c.lr) == chosen for c in cands.values()):
        shape = schedule("m200,q4,m50")
        cands[f"metamodel 200, queries 4, metamodel 50; params: {chosen[0]}, lr {chosen[1]}"] = IOCandidate(
            shape, *chosen, paper_shape=True
        )
    job = functools.partial(_io_job, source=source, val=val, init=init, kp=kp, ko=ko, seed=seed)
    return _score(job, cands, lambda c: c.paper_shape and (c.rule, c.lr) == chosen)


def run(
    method: str,
    params: dict[str, Any],
    outputs_npz: Path,
    boxes_csv: Path,
    splits: Path,
    data: Path,
    models: Path,
    shards: Path,
    metrics: Path,
    plots: Path | None = None,
) -> list[dict[str, Any]]:
    """Score ``method``'s candidates on the validation carve; write the rows as JSON (and CSV).

    Args:
        method: one of :data:`METHODS`.
        params: the whole params tree (``seed``, ``kennen_o``, ``kennen_i``, ``kennen_io``).
        outputs_npz, boxes_csv, splits: the query outputs, the box table, the splits folder.
        data, models, shards: MNIST and the white-box zoo (read by kennen-i and kennen-io only).
        metrics: the JSON written: {method, n_train, n_validation, rows}.
        plots: the same rows as CSV, or None.
    """
    if method not in METHODS:
        raise KennenError(f"{method!r}: expected one of {', '.join(METHODS)}")
    base = base_seed(params)
    boxes = read_boxes(boxes_csv)
    val = validation_carve(boxes, read_split(splits, "r", boxes)["train"], base)
    outputs, query_index = load_outputs(outputs_npz, boxes)
    ko = section(KennenOParams, params, "kennen_o")
    log.info("%s: %d training / %d validation boxes", method, len(val["train"]), len(val["test"]))
    if method == "kennen_o":
        rows = kennen_o_rows(outputs, boxes, val, ko, base)
    else:
        source = ZooSource.at(shards, models, boxes)
        mnist_test = mnist_data.load(data).test_images
        if method == "kennen_i":
            rows = kennen_i_rows(source, mnist_test, val, section(KennenIParams, params, "kennen_i"), base)
        else:
            kio = section(KennenIOParams, params, "kennen_io")
            rows = kennen_io_rows(source, mnist_test, query_index, val, kio, ko, base)
    for row in rows:
        log.info(
            "%s %s: validation mean %.1f%% (%.0f s)", method, row["setting"], row["validation_mean"], row["seconds"]
        )
    write_json(
        metrics, {"method": method, "n_train": len(val["train"]), "n_validation": len(val["test"]), "rows": rows}
    )
    if plots is not None:
        write_csv(plots, rows, list(rows[0]))
    return rows
