"""Stage ``kennen_o``: train kennen-o on the R split with every optimiser setting; report the headline one.

The headline setting is trained with ``kennen_o.seeds`` seeds and ``kennen_o.early_stop``,
the other settings with the first seed and their fixed schedule; all trainings run in
parallel (``kennen.metamodel.runs``). Writes:

- metrics: ``acc.<attribute>``, ``acc.mean`` of the headline (first seed) with 95%
  bootstrap intervals over the test boxes (``acc.<attribute>_low``/``_high``,
  ``acc.mean_low``/``_high``); the spread over seeds (``seeds.acc.mean`` with its
  t-interval ``seeds.acc.mean_low``/``_high`` and ``seeds.acc.mean_sd``, per attribute
  ``seeds.acc.<attribute>`` and ``seeds.acc.<attribute>_sd``, ``seeds.n``);
  ``<setting>.acc.mean`` for every setting; box counts and epochs trained;
- ``predictions.csv``: the headline's test-box predictions (``runs.write_predictions``
  documents the format), for paired comparisons in later stages;
- calibration of the headline (``kennen.metamodel.calibration``), fitted on its
  early-stopping carve: ``ece_before``/``ece_after`` (with intervals), abstention and
  out-of-zoo figures in the metrics, ``reliability.csv`` and ``risk_coverage.csv`` in the
  plots, ``reliability.png``; the temperatures and the training boxes' features go
  into the metamodel for ``kennen whiten``;
- a per-setting table, per-attribute confusion matrices, the trained metamodel
  (safetensors + JSON) and DVCLive training curves of the headline.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from dvclive import Live

from kennen import data as mnist_data
from kennen.attributes import ATTRIBUTES, KEYS
from kennen.config import base_seed, load_params, section
from kennen.io import write_json
from kennen.metamodel.artifact import data_digest, save_metamodel, zoo_provenance
from kennen.metamodel.calibration import Calibrated, CalibrationParams, calibrate_scores
from kennen.metamodel.kennen_o import METAMODEL_OFFSET, Curve, KennenOParams, configs, features, targets
from kennen.metamodel.report import plot_reliability, write_confusions, write_table
from kennen.metamodel.runs import evaluate_runs, seed_metrics, stage_runs, write_predictions
from kennen.queries import load_outputs, read_boxes
from kennen.splits import read_split
from stages._common import parser, run

log = logging.getLogger("kennen.kennen_o")


def _log_curve(path: str, curve: Curve) -> None:
    live = Live(path, dvcyaml=False, save_dvc_exp=False, report=None)
    for epoch, loss in enumerate(curve.loss):
        live.log_metric("train/loss", loss)
        if epoch < len(curve.val_acc):
            live.log_metric("val/acc_mean", curve.val_acc[epoch])
        live.next_step()
    live.end()


def _training(curve: Curve) -> dict[str, float]:
    out = {"train.epochs": curve.epochs, "train.n_fit": curve.n_fit, "train.n_val": curve.n_val}
    return out | ({"train.best_epoch": curve.best_epoch + 1} if curve.best_epoch is not None else {})


def calibrate(kp: KennenOParams, cp: CalibrationParams, outputs, boxes, split, model, seed: int) -> Calibrated:
    """The headline's calibration on its early-stopping carve (none without a carve: temperatures 1)."""
    x, y = features(outputs, kp.n_queries, kp.output), targets(boxes).numpy()
    train, test = split["train"], split["test"]
    # the carve the headline (replica 0) held out, whole configurations
    rows = kp.early_stop.carve(len(train), seed + METAMODEL_OFFSET, configs(boxes, train))
    val = [train[i] for i in rows[1].tolist()] if rows is not None else []
    return calibrate_scores(model, (x[val], y[val]), (x[test], y[test]), x[train], cp, seed, "kennen-o")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    for name in ("data", "outputs", "boxes", "splits", "metrics", "plots", "figures", "model", "live"):
        p.add_argument(f"--{name}", required=True)

    def body(args) -> None:
        params = load_params(args.params)
        kp = section(KennenOParams, params, "kennen_o")
        cp = section(CalibrationParams, params, "calibration")
        outputs, query_index = load_outputs(Path(args.outputs))
        boxes, split = read_boxes(Path(args.boxes)), read_split(Path(args.splits), "r")
        names, runs = stage_runs(kp, split)
        results = evaluate_runs(runs, outputs, boxes, kp.hidden, base_seed(params), kp.early_stop)
        replicas = [res for name, res in zip(names, results, strict=True) if name == kp.optimiser]
        headline = replicas[0]
        metrics: dict[str, float] = {}
        table = []
        for name, res in zip(names, results, strict=True):
            if res is not headline and name == kp.optimiser:
                continue  # the other seeds enter through seed_metrics
            log.info("kennen-o [%s]: mean %.2f [%.2f, %.2f], %d epochs", name, res.metrics["acc.mean"],
                     res.metrics["acc.mean_low"], res.metrics["acc.mean_high"], res.curve.epochs)  # fmt: skip
            accs = {k: res.metrics[f"acc.{k}"] for k in (*KEYS, "mean", "mean_low", "mean_high")}
            table.append({"setting": name} | accs | {"epochs": res.curve.epochs})
            metrics[f"{name}.acc.mean"] = res.metrics["acc.mean"]
        spread = seed_metrics(replicas)
        log.info("kennen-o over %d seeds: %s", len(replicas), {k: v for k, v in spread.items() if "mean" in k})
        counts = {"n_train": len(split["train"]), "n_test": len(split["test"])}
        cal = calibrate(kp, cp, outputs, boxes, split, headline.model, base_seed(params))
        log.info("kennen-o calibration: ECE %.3f -> %.3f; min confidence %.2f answers %.1f%% at %.1f%%",
                 cal.metrics["ece_before"], cal.metrics["ece_after"], cal.min_confidence,
                 cal.metrics["abstain.coverage"], cal.metrics["abstain.accuracy"])  # fmt: skip
        write_json(args.metrics, headline.metrics | counts | _training(headline.curve) | spread | metrics | cal.metrics)
        write_table(Path(args.plots) / "reliability.csv", cal.reliability)
        write_table(Path(args.plots) / "risk_coverage.csv", cal.risk_coverage)
        plot_reliability(
            cal.reliability, Path(args.figures) / "reliability.png", "kennen-o: test boxes, all attributes"
        )
        write_table(Path(args.plots) / "optimisers.csv", table)
        write_predictions(Path(args.plots) / "predictions.csv", headline.test_ids, headline.y_true, headline.y_pred)
        _log_curve(args.live, headline.curve)
        write_confusions(
            headline.y_true,
            headline.y_pred,
            Path(args.plots) / "confusion",
            Path(args.figures) / "confusion.png",
            f"kennen-o ({kp.output}, {kp.n_queries} queries)",
        )
        mnist = mnist_data.load(Path(args.data))
        images = mnist.test_images[query_index[: kp.n_queries]]
        tensors = {f"mlp.{k}": v for k, v in headline.model.state_dict().items()}
        tensors["queries"] = torch.from_numpy(images[:, None].astype("float32") / 255.0)  # pixels in [0, 1]
        tensors |= cal.tensors
        save_metamodel(
            Path(args.model),
            tensors,
            {
                "method": "kennen-o",
                "n_queries": kp.n_queries,
                "output": kp.output,
                "hidden": kp.hidden,
                "optimiser": kp.optimiser,
                "attributes": [a.key for a in ATTRIBUTES],
                "query_index": query_index[: kp.n_queries].tolist(),
                "image_space": "pixels in [0, 1], [Q, 1, 28, 28]; normalise with MNIST mean/std before querying",
                "zoo": zoo_provenance(params, len(split["train"]), len(split["test"])),
                "test_accuracy": {f"acc.{k}": headline.metrics[f"acc.{k}"] for k in (*KEYS, "mean")}
                | {f"acc.{k}_{b}": headline.metrics[f"acc.{k}_{b}"] for k in (*KEYS, "mean") for b in ("low", "high")},
                "provenance": {"data_sha256": data_digest([Path(args.outputs), Path(args.boxes), Path(args.splits)])},
            }
            | cal.meta("temperature scaling per attribute", int(cal.metrics["calibration.n_val"]), cp),
        )

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
