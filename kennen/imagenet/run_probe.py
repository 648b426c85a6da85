"""The ``imagenet_probe`` stage: name the family of held-out models from their outputs (paper §7).

Folds hold out one model per family; for every fold, query draw and query count, the family MLP
(kennen-o's, trained by ``kennen.metamodel.kennen_o``; ``kennen.imagenet.probe``) is trained on
the other architectures' models, as parallel tasks (``kennen.metamodel.runner.train_tasks``).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np

from kennen.config import base_seed, section
from kennen.errors import KennenError
from kennen.imagenet.families import ProbeParams
from kennen.imagenet.probe import family_attribute, folds, load_zoo, run_probe_task, summarise
from kennen.imagenet.report import plot_accuracy, plot_confusion
from kennen.io import write_csv, write_json
from kennen.metamodel.runner import train_tasks

log = logging.getLogger("kennen.imagenet_probe")
LABEL = {
    "offline": "offline surrogate: torchvision architectures on 32x32 MNIST, briefly trained (not the paper's experiment)",
    "pretrained": "pretrained torchvision ImageNet models on natural images (the paper's experiment)",
}


def _metrics(pp: ProbeParams, by_feature: dict[str, tuple[list[dict], Any]], models: list[dict]) -> dict[str, Any]:
    """The stage's metrics: the headline feature's accuracy per query count (with intervals), per family at the
    largest count, the other features' accuracy per count."""
    families, head = list(pp.families), pp.features[0]
    rows = by_feature[head][0]
    top = rows[-1]
    metrics = {
        "mode": pp.mode,
        "label": LABEL[pp.mode],
        "feature": head,
        "chance": round(100 / len(families), 2),
        "n_models": len(models),
        "n_architectures": len({m["name"] for m in models}),
        "folds": pp.folds,
        "draws": pp.draws,
        **{f"acc.n{r['n_queries']}": r["acc"] for r in rows},
        **{f"acc.n{r['n_queries']}_{b}": r[f"acc_{b}"] for r in rows for b in ("low", "high")},
        **{f"acc.n{top['n_queries']}.{f}": top[f"acc.{f}"] for f in families},
        **{f"{k}.acc.n{r['n_queries']}": r["acc"] for k, (krows, _) in by_feature.items() if k != head
           for r in krows},
    }  # fmt: skip
    if pp.mode == "offline":
        metrics["surrogate_query_acc_mean"] = round(float(np.mean([float(m["query_acc"]) for m in models])), 2)
    return metrics


def run(params: dict[str, Any], zoo: Path, metrics: Path, plots: Path, figures: Path) -> None:
    """Train and test the family probe on every fold, draw and query count; write metrics, tables and PNGs.

    Args:
        params: the params tree (section ``imagenet_probe`` and the seed).
        zoo: the ``imagenet_zoo`` stage's folder.
        metrics, plots, figures: where to write.
    """
    pp = section(ProbeParams, params, "imagenet_probe")
    seed = base_seed(params)
    outputs, models = load_zoo(zoo)
    families = list(pp.families)
    fams = [m["family"] for m in models]
    if sorted(set(fams)) != sorted(families):
        raise KennenError(f"{zoo}: the zoo does not match imagenet_probe.families (run `dvc repro imagenet_zoo`)")
    labels = np.array([families.index(f) for f in fams], dtype=np.int64)
    fold_list = folds(families, [m["name"] for m in models], fams, pp.folds, seed)
    counts = sorted({min(n, outputs.shape[1]) for n in pp.n_queries})
    tasks = [(k, f, d, n) for k in pp.features for n in counts for f in range(pp.folds) for d in range(pp.draws)]
    job = functools.partial(
        run_probe_task, outputs=outputs, labels=labels, fold_list=fold_list, attr=family_attribute(families),
        hidden=pp.hidden, opt=pp.optimiser, seed=seed,
    )  # fmt: skip
    done = train_tasks(job, tasks, desc="probe fits")
    results = [done[t] for t in tasks]
    head = pp.features[0]
    by_feature = {k: summarise([r for r in results if r["feature"] == k], families, seed) for k in pp.features}
    rows, confusions = by_feature[head]
    for k, (krows, _) in by_feature.items():
        for r in krows:
            log.info("%s, %d queries: %.1f%% %s", k, r["n_queries"], r["acc"], {f: r[f"acc.{f}"] for f in families})
    top = rows[-1]
    write_json(metrics, _metrics(pp, by_feature, models))
    table = [{"feature": k, **r} for k, (krows, _) in by_feature.items() for r in krows]
    write_csv(plots / "accuracy.csv", table, list(table[0]))
    write_csv(
        plots / "confusion.csv",
        [{"actual": families[t], "predicted": families[q]} for r in results
         if r["n"] == top["n_queries"] and r["feature"] == head
         for t, q in zip(r["true"], r["pred"], strict=True)],
        ("actual", "predicted"),
    )  # fmt: skip
    title = f"family probe ({pp.mode}, {head} features)"
    others = {k: krows for k, (krows, _) in by_feature.items() if k != head}
    plot_accuracy(rows, families, title, figures / "accuracy.png", others)
    plot_confusion(
        confusions[top["n_queries"]], families, f"{title}, {top['n_queries']} queries", figures / "confusion.png"
    )
