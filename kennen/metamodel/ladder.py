"""What each kind of access gives away: kennen-o under output defences, and a white-box baseline (``defences`` stage).

Every setting of ``params.yaml: defences.settings`` (:mod:`kennen.defences`) is applied
to the stored outputs of every black box (no zoo retraining), then:

- **utility** on the defended box itself, over all stored queries (``queries.n_max``
  MNIST test images): top-1 agreement with the undefended box, change of top-1
  accuracy, mean KL divergence (:func:`kennen.defences.utility`);
- **non-adaptive attacker**: kennen-o trained on the clean outputs (the ``none``
  setting) of a fold's training boxes, tested on the defended outputs of its test boxes;
- **adaptive attacker**: kennen-o trained and tested on the defended outputs (the
  attacker queries the defended training boxes as it queries the target).

Both attackers use the headline kennen-o settings (``kennen_o``: queries, width,
optimiser, early stopping) and the headline seed, in the cross-validation folds shared with
the ``kennen_o`` stage: every box is a test box once. Accuracies are class-balanced, over
boxes and over configurations, with 95% intervals over resampled configurations
(``kennen.stats``). **Deviation:** the
clean baseline here reads the softmax of the stored outputs (:func:`kennen.defences.probabilities`),
which differs from the ``kennen_o`` stage's input for ensembles only (the mean of
log-probabilities, renormalised), so its ``none`` row is this stage's own baseline and
not a copy of kennen-o's headline.

Cost, per fold: the non-adaptive attacker is one training whose test inputs are every
setting's test boxes at once; the adaptive attacker is one training per setting; all run in
parallel as ``kennen.parallel`` tasks, each on one thread (the budget in the README).
The white-box rung is :mod:`kennen.metamodel.weights`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kennen.attributes import ATTRIBUTES, KEYS
from kennen.config import require
from kennen.defences import Defence, as_log, defend, parse_defence, probabilities, utility
from kennen.errors import KennenError
from kennen.metamodel.cv import out_of_fold, units_of
from kennen.metamodel.kennen_o import KennenOParams, configs, features, model_seed, targets
from kennen.metamodel.runs import Job, run_jobs
from kennen.splits import fold_split
from kennen.stats import accuracies, paired_difference, scored

NONE = Defence("none")


@dataclass(frozen=True)
class DefencesParams:
    """``defences`` section of params.yaml.

    ``settings``: ``NAME`` or ``NAME:VALUE`` strings (:mod:`kennen.defences`), each defence's
    settings listed weakest first: the last one of a defence is its "strongest" on the
    results page. ``none`` is always evaluated (the baseline) and need not be listed.
    """

    settings: tuple[str, ...]
    whitebox_iter: int = 200  # boosting iterations per attribute of the white-box metamodel

    def check(self, where: str) -> None:
        require(len(self.settings) >= 1, f"{where}.settings", "must list at least one defence")
        seen: dict[str, int] = {}
        for i, text in enumerate(self.settings):
            d = parse_defence(text, f"{where}.settings[{i}]")
            require(str(d) not in seen, f"{where}.settings[{i}]", f"{d} is listed twice (also at [{seen.get(str(d))}])")
            seen[str(d)] = i
        require(self.whitebox_iter >= 1, f"{where}.whitebox_iter", f"must be at least 1, got {self.whitebox_iter}")

    def defences(self) -> list[Defence]:
        """``none`` first, then the listed settings in order."""
        listed = [parse_defence(t) for t in self.settings]
        return [NONE, *(d for d in listed if d != NONE)]


@dataclass(frozen=True)
class Setting:
    """One defence setting's results."""

    defence: Defence
    utility: dict[str, float]
    nonadaptive: dict[str, float]  # ``score`` metrics
    adaptive: dict[str, float]
    vs_none: dict[str, float]  # adaptive minus the undefended, paired over resampled configurations


def score(y_true: np.ndarray, y_pred: np.ndarray, units: list[Any], seed: int) -> dict[str, float]:
    """``acc.*`` over boxes with intervals over resampled configurations, and ``acc_config.mean`` (each
    configuration once), the form of every row of the ladder."""
    over_configs = accuracies(y_true, y_pred, units=units, per_config=True)["mean"]
    return scored(y_true, y_pred, units, seed=seed) | {"acc_config.mean": over_configs}


def evaluate(
    defences: list[Defence],
    kp: KennenOParams,
    outputs: np.ndarray,
    boxes: list[dict[str, Any]],
    folds: list[list[int]],
    labels: np.ndarray,
    seed: int,
    max_workers: int | None = None,
) -> tuple[np.ndarray, list[Setting]]:
    """(y_true of every box, one Setting per defence, scored on every box out of fold); ``defences[0]``: ``none``.

    Args:
        outputs: stored log-probabilities [N_boxes, Q_max, 10] (``queries.load_outputs``).
        folds: the cross-validation folds (``splits.read_folds``).
        labels: the query images' true digits [Q_max].
        seed: the base seed (defence generators; kennen-o: ``model_seed(seed)``, the headline's).
    """
    if defences[0] != NONE:
        raise ValueError("the first setting must be none (the attackers' clean baseline)")
    y = targets(boxes)
    p = probabilities(outputs)
    answers_x, utilities = [], []
    for d in defences:
        q = defend(d, p, seed)
        utilities.append(utility(p, q, labels))
        answers_x.append(features(as_log(q[:, : kp.n_queries]), kp.n_queries, "prob"))
        del q
    opt, stop, seed_o = kp.optimisers[kp.optimiser], kp.early_stop, model_seed(seed)
    jobs = []
    for f in range(len(folds)):
        split = fold_split(folds, f)
        train, test = split["train"], split["test"]
        if not train or not test:
            raise KennenError(f"defences: fold {f} needs training and test boxes")
        x_test = torch.cat([x[test] for x in answers_x])
        groups = configs(boxes, train)
        jobs.append(Job(answers_x[0][train], y[train], x_test, kp.hidden, opt, seed_o, stop, groups=groups))
        jobs += [Job(x[train], y[train], x[test], kp.hidden, opt, seed_o, stop, groups=groups) for x in answers_x[1:]]
    results = run_jobs(jobs, max_workers)
    per_fold = len(defences)
    nonadaptive: list[list[np.ndarray]] = [[] for _ in defences]
    adaptive: list[list[np.ndarray]] = [[] for _ in defences]
    for f in range(len(folds)):
        rs = results[f * per_fold : (f + 1) * per_fold]
        clean_on_all = np.split(rs[0]["y_pred"], len(defences))
        for i in range(len(defences)):
            nonadaptive[i].append(clean_on_all[i])
            # none: the clean model is the adaptive one
            adaptive[i].append(clean_on_all[0] if i == 0 else rs[i]["y_pred"])
    y_true, units = y.numpy(), units_of(boxes)
    clean = out_of_fold(folds, adaptive[0], len(boxes))
    settings = []
    for d, u, na, ad in zip(defences, utilities, nonadaptive, adaptive, strict=True):
        pred = out_of_fold(folds, ad, len(boxes))
        gap = paired_difference(y_true, pred, clean, units, per_config=True, seed=seed)
        nonadaptive_score = score(y_true, out_of_fold(folds, na, len(boxes)), units, seed)
        settings.append(Setting(d, u, nonadaptive_score, score(y_true, pred, units, seed), gap))
    return y_true, settings


def chance() -> float:
    """Mean class-balanced accuracy of guessing (the mean of 1/#classes over the attributes)."""
    return round(float(np.mean([a.chance for a in ATTRIBUTES])), 2)


def _acc(m: dict[str, float]) -> dict[str, float]:
    out = {k: m[f"acc.{k}"] for k in (*KEYS, "mean")} | {
        f"{k}_{b}": m[f"acc.{k}_{b}"] for k in (*KEYS, "mean") for b in ("low", "high") if f"acc.{k}_{b}" in m
    }
    return out | ({"config_mean": m["acc_config.mean"]} if "acc_config.mean" in m else {})


def crafted_row(kennen_i: dict[str, Any], n_boxes: int) -> dict[str, float]:
    """kennen-i's cross-validated accuracies (``cv.acc.*`` keys of the ``kennen_i`` stage's metrics) as a
    ladder row.

    kennen-i reads only the top-1 labels of its crafted queries, so a label-only API gives
    it everything it needs: its result *is* the label-only attacker with crafted queries.
    The ``kennen_i`` stage tests in the same folds; its box count must agree.
    """
    if kennen_i.get("cv.n_boxes") != n_boxes:
        raise KennenError(
            f"kennen_i metrics: {kennen_i.get('cv.n_boxes')} cross-validated boxes, the zoo has {n_boxes}"
        )
    try:
        row = {k: float(kennen_i[f"cv.{k}"]) for k in _acc_keys() if f"cv.{k}" in kennen_i}
        row |= {"acc.mean": float(kennen_i["cv.acc.mean"])}
        return row | (
            {"acc_config.mean": float(kennen_i["cv.acc_config.mean"])} if "cv.acc_config.mean" in kennen_i else {}
        )
    except (KeyError, TypeError, ValueError) as e:
        raise KennenError(f"kennen_i metrics: no usable cross-validated accuracies ({e})") from None


def _acc_keys() -> list[str]:
    return [f"acc.{k}{b}" for k in (*KEYS, "mean") for b in ("", "_low", "_high")]


def metrics(
    settings: list[Setting],
    whitebox: dict[str, float],
    crafted: dict[str, float],
    n_boxes: int,
    n_configs: int,
    n_folds: int,
    n_queries: int,
    n_utility: int,
) -> dict[str, Any]:
    """The stage's metrics JSON: counts, chance, the white-box and kennen-i rows, per setting utility and both
    attackers."""
    return {
        "n_boxes": n_boxes,
        "n_configs": n_configs,
        "n_folds": n_folds,
        "n_queries": n_queries,
        "utility_queries": n_utility,
        "chance": chance(),
        "n_settings": len(settings),
        "whitebox": _acc(whitebox),
        "label_kennen_i": _acc(crafted),
        "settings": {
            str(s.defence): {
                "defence": s.defence.name,
                "value": s.defence.value,
                "utility": s.utility,
                "nonadaptive": _acc(s.nonadaptive),
                "adaptive": _acc(s.adaptive),
                "adaptive_vs_none": s.vs_none,
            }
            for s in settings
        },
    }


def curve_rows(settings: list[Setting]) -> list[dict[str, Any]]:
    """Privacy-utility plot data: one row per setting."""
    rows = []
    for s in settings:
        row: dict[str, Any] = {"setting": str(s.defence), "defence": s.defence.name, "value": s.defence.value}
        row |= s.utility
        for name, m in (("nonadaptive", s.nonadaptive), ("adaptive", s.adaptive)):
            row |= {name: m["acc.mean"], f"{name}_low": m["acc.mean_low"], f"{name}_high": m["acc.mean_high"]}
        rows.append(row)
    return rows


def attribute_rows(
    settings: list[Setting], whitebox: dict[str, float], crafted: dict[str, float]
) -> list[dict[str, Any]]:
    """Per-attribute accuracy of every setting and attacker, of the white-box metamodel and of kennen-i."""
    rows = [{"setting": "weights", "attacker": "white-box"} | {k: whitebox[f"acc.{k}"] for k in (*KEYS, "mean")}]
    rows.append({"setting": "label", "attacker": "kennen-i"} | {k: crafted[f"acc.{k}"] for k in (*KEYS, "mean")})
    for s in settings:
        for name, m in (("non-adaptive", s.nonadaptive), ("adaptive", s.adaptive)):
            rows.append({"setting": str(s.defence), "attacker": name} | {k: m[f"acc.{k}"] for k in (*KEYS, "mean")})
    return rows
