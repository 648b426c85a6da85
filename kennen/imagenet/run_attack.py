"""The ``imagenet_attack`` stage: family-aware adversarial examples (paper §7, Tables 4 and 5).

The targets are one model per architecture of ``imagenet_probe.families`` (offline: the family
zoo's seed-0 surrogates on MNIST digits outside the probe's query pool; pretrained: torchvision's
ImageNet classifiers on the labelled images of ``imagenet_attack.labels``). Adversarial images
(L∞ PGD, :mod:`kennen.imagenet.attack`) are made once per distinct generating set, as parallel
tasks, and tested on every target that set serves; the family each target is *predicted* to
have comes from the family probe trained without the target's architecture.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np

from kennen import data as mnist_data
from kennen.config import base_seed, section
from kennen.errors import KennenError
from kennen.imagenet.attack import (
    PAPER_TABLE4,
    PAPER_TABLE5,
    SCENARIOS,
    AttackParams,
    fooled,
    make_plan,
    run_clean,
    run_job,
    tables,
)
from kennen.imagenet.families import ProbeParams
from kennen.imagenet.offline import size
from kennen.imagenet.probe import load_zoo
from kennen.imagenet.report import plot_attack
from kennen.imagenet.sources import (
    OfflineSource,
    PretrainedSource,
    offline_images,
    pretrained_images,
    probe_predictions,
)
from kennen.io import read_json, write_csv, write_json
from kennen.metamodel.runner import train_tasks

log = logging.getLogger("kennen.imagenet_attack")
LABEL = {
    "offline": "offline surrogate: torchvision architectures on 32x32 MNIST digits (not the paper's experiment)",
    "pretrained": "pretrained torchvision ImageNet models on natural images (the paper's setting)",
}


def _job(i: int, jobs, source, x, y, params, seed):
    return run_job(jobs[i], i, source, x, y, params, seed)


def _source(pp: ProbeParams, ap: AttackParams, zoo: Path, index: dict, data: Path, seed: int):
    """(the targets as a source, attacked images x, their labels y) of the probe's mode."""
    if pp.mode == "offline":
        mnist = mnist_data.load(data)
        x, y = offline_images(mnist.test_images, mnist.test_labels, pp.offline.pool, ap.images, seed)
        return OfflineSource(str(zoo / "weights"), int(index["image_size"])), x, y
    x, y = pretrained_images(ap.image_dir or pp.pretrained.image_dir, ap.labels, ap.images)
    return PretrainedSource(pp.pretrained.download), x, y


def run(params: dict[str, Any], data: Path, zoo: Path, metrics: Path, plots: Path, figures: Path) -> None:
    """Predict the targets' families, attack from every generating set, write Tables 4 and 5.

    Args:
        params: the params tree (sections ``imagenet_probe``, ``imagenet_attack`` and the seed).
        data: ``mnist.npz`` (offline mode); zoo: the ``imagenet_zoo`` stage's folder.
        metrics, plots, figures: where to write.
    """
    pp = section(ProbeParams, params, "imagenet_probe")
    ap = section(AttackParams, params, "imagenet_attack")
    seed = base_seed(params)
    outputs, rows = load_zoo(zoo)
    index = read_json(zoo / "weights" / "index.json")
    targets = [name for _, name in pp.models()]
    if [r["name"] for r in rows if int(r["seed"]) == 0] != targets or index["mode"] != pp.mode:
        raise KennenError(f"{zoo}: the zoo does not match imagenet_probe (run `dvc repro imagenet_zoo`)")
    families = list(pp.families)
    predicted = probe_predictions(
        outputs, [r["name"] for r in rows], [r["family"] for r in rows], families, targets, pp.features[0],
        min(ap.probe_queries, outputs.shape[1]), pp.hidden, pp.optimiser, seed,
    )  # fmt: skip
    plan = make_plan(pp.families, predicted, seed)
    right = sum(predicted[t] == plan.family_of(t) for t in targets)
    log.info("probe (%s, %d queries): %d of %d targets' families right", pp.features[0], ap.probe_queries, right,
             len(targets))  # fmt: skip
    source, x, y = _source(pp, ap, zoo, index, data, seed)
    jobs = plan.jobs
    cost = {n: size(n) for n in targets}  # the largest generating sets first, so the workers finish together
    order = sorted(range(len(jobs)), key=lambda i: -sum(cost[g] for g in jobs[i].generators))
    work = functools.partial(_job, jobs=jobs, source=source, x=x, y=y, params=ap, seed=seed)
    done = train_tasks(work, order, desc="attacks")
    # (generating set, target) -> which images the target gets wrong
    errors = {(jobs[i].generators, t): v for i in order for t, v in done[i].items()}
    clean_done = train_tasks(functools.partial(run_clean, source=source, x=x, y=y), targets)
    clean = {t: clean_done[t] for t in targets}
    out = tables(plan, {k: 100.0 * float(v.mean()) for k, v in errors.items()},
                 {t: 100.0 * float(v.mean()) for t, v in clean.items()})  # fmt: skip
    fool = tables(plan, {(g, t): fooled(v, clean[t]) for (g, t), v in errors.items()}, {t: 0.0 for t in targets})
    t4, t5 = out["table4"], out["table5"]
    diag = round(float(np.mean([t4[f][f] for f in families])), 2)
    write_json(metrics, {
        "mode": pp.mode,
        "label": LABEL[pp.mode],
        "attack": {"method": "L-inf PGD on the mean cross-entropy of the generating models (pixel space)",
                   "eps": ap.eps, "step": ap.step, "steps": ap.steps, "random_start": ap.random_start},
        "images": len(x),
        "targets": len(targets),
        "generating_sets": len(jobs),
        "probe": {"feature": pp.features[0], "queries": ap.probe_queries, "right": right, "of": len(targets)},
        "table5": t5,
        "table4_diagonal_mean": diag,
        "table4": t4,
        "fooled": {"table5": fool["table5"], "table4": {r: v for r, v in fool["table4"].items() if r != "clean"}},
        "per_target": out["per_target"],
        "paper": {"table5": PAPER_TABLE5, "table4": PAPER_TABLE4},
    })  # fmt: skip
    rows4 = [{"generating": r, **{f"target.{f}": v for f, v in t4[r].items()}} for r in t4]
    write_csv(plots / "table4.csv", rows4, list(rows4[0]))
    write_csv(plots / "table5.csv", [{"scenario": s, "misclassification": t5[s], "paper": PAPER_TABLE5[s]}
                                     for s in SCENARIOS], ("scenario", "misclassification", "paper"))  # fmt: skip
    plot_attack(t4, families, f"transfer of L-inf PGD (eps {ap.eps}), {pp.mode}", figures / "table4.png")
    log.info("Table 5: %s (paper %s); Table 4 diagonal mean %.1f", t5, PAPER_TABLE5, diag)
