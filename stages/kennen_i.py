"""Stage ``kennen_i``: craft kennen-i's queries on the R split's training boxes; evaluate by top-1 label on its test boxes.

The headline target (``kennen_i.target``) and every variant run as parallel tasks
on the executor (``KENNEN_EXECUTOR``). Writes the headline metrics
(``acc.<attribute>``, ``acc.mean``, each with its 95% bootstrap interval over the
test boxes, ``_low``/``_high``; ``in_range``; plus ``<target>.acc.mean`` and its
interval for every target), a per-target table, confusion matrices, the crafted images as
arrays (``models/kennen_i.safetensors``) and as a PNG grid, and DVCLive loss curves. Crafting holds out
``calibration.val_fraction`` of the training boxes (ours); the headline's answers are calibrated on them
(``ece_before``/``ece_after``, abstention and out-of-zoo figures, ``reliability.csv``,
``risk_coverage.csv``, ``reliability.png``; ``kennen.metamodel.calibration``).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch
from dvclive import Live

from kennen import data as mnist_data
from kennen.attributes import ATTRIBUTES
from kennen.config import base_seed, load_params, section
from kennen.errors import KennenError
from kennen.io import write_json
from kennen.metamodel.artifact import data_digest, save_metamodel, zoo_provenance
from kennen.metamodel.calibration import CalibrationParams, calibrate_labels
from kennen.metamodel.crafted import KENNEN_I_OFFSET, ZooSource, draw_images
from kennen.metamodel.kennen_i import KennenIParams, in_range, run_target, scores
from kennen.metamodel.kennen_o import accuracies
from kennen.metamodel.report import plot_images, plot_reliability, write_confusions, write_table
from kennen.parallel import run_tasks
from kennen.queries import read_boxes
from kennen.splits import read_split
from stages._common import parser, run

log = logging.getLogger("kennen.kennen_i")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    for name in ("data", "boxes", "models", "shards", "splits", "metrics", "plots", "figures", "model", "live"):
        p.add_argument(f"--{name}", required=True)

    def body(args) -> None:
        params = load_params(args.params)
        kp = section(KennenIParams, params, "kennen_i")
        cp = section(CalibrationParams, params, "calibration")
        seed = base_seed(params) + KENNEN_I_OFFSET
        boxes, split = read_boxes(Path(args.boxes)), read_split(Path(args.splits), "r")
        if not split["train"] or not split["test"]:
            raise KennenError(f"{args.splits}: the R split has no training or no test boxes")
        mnist = mnist_data.load(Path(args.data))
        # Official init "randval": random MNIST images (here drawn from the test set, as the queries are).
        init = mnist_data.normalise(mnist.test_images[draw_images(len(mnist.test_images), len(ATTRIBUTES), seed)])
        source = ZooSource.at(Path(args.shards), Path(args.models), boxes)
        order = list(dict.fromkeys([kp.target, *kp.variants]))
        job = functools.partial(
            run_target, source=source, train_ids=split["train"], test_ids=split["test"], init=init, params=kp, seed=seed,
            val_fraction=cp.val_fraction,
        )  # fmt: skip
        results = {}
        for target, result in run_tasks(job, order, len(order)):
            results[target] = result
            log.info("kennen-i [%s]: mean %.2f", target, accuracies(result["y_true"], result["y_pred"])["acc.mean"])

        head = results[kp.target]
        metrics = scores(head)
        table = []
        for target in order:
            r = results[target]
            m = scores(r)
            point = {k.removeprefix("acc."): v for k, v in m.items() if not k.endswith(("_low", "_high"))}
            table.append(
                {"target": target, "in_range": in_range(r["labels"], target)}
                | point
                | {"mean_low": m["acc.mean_low"], "mean_high": m["acc.mean_high"]}
            )
            metrics |= {f"{target}.{k}": m[k] for k in ("acc.mean", "acc.mean_low", "acc.mean_high")}
        metrics |= {
            "in_range": in_range(head["labels"], kp.target),
            "n_train": len(split["train"]),
            "n_test": len(split["test"]),
        }
        cal = calibrate_labels((head["val_labels"], head["val_pred"], head["y_val"]),
                               (head["labels"], head["y_pred"], head["y_true"]), head["train_labels"], cp,
                               base_seed(params), "kennen-i")  # fmt: skip
        log.info("kennen-i calibration: ECE %.3f -> %.3f; min confidence %.2f answers %.1f%% at %.1f%%",
                 cal.metrics["ece_before"], cal.metrics["ece_after"], cal.min_confidence,
                 cal.metrics["abstain.coverage"], cal.metrics["abstain.accuracy"])  # fmt: skip
        metrics |= cal.metrics | {"n_fit": head["n_fit"]}
        write_json(args.metrics, metrics)
        write_table(Path(args.plots) / "targets.csv", table)
        write_table(Path(args.plots) / "reliability.csv", cal.reliability)
        write_table(Path(args.plots) / "risk_coverage.csv", cal.risk_coverage)
        plot_reliability(
            cal.reliability, Path(args.figures) / "reliability.png", "kennen-i: test boxes, all attributes"
        )
        write_confusions(
            head["y_true"],
            head["y_pred"],
            Path(args.plots) / "confusion",
            Path(args.figures) / "confusion.png",
            f"kennen-i ({kp.target}, top-1 label)",
        )
        titles = [a.title for a in ATTRIBUTES] if kp.target == "each" else ["all attributes"]
        plot_images(
            head["images"], titles, Path(args.figures) / "queries.png", "kennen-i: crafted queries (digit j = value j)"
        )
        live = Live(args.live, dvcyaml=False, save_dvc_exp=False, report=None)
        for loss in head["losses"]:
            live.log_metric("train/loss", loss)
            live.next_step()
        live.end()

        tensors = {f"queries.{t}": torch.from_numpy(results[t]["images"]) for t in order}
        tensors |= {f"fallback.{t}": torch.from_numpy(results[t]["fallback"]) for t in order}
        tensors |= cal.tensors  # the headline target's
        save_metamodel(
            Path(args.model),
            tensors,
            {
                "method": "kennen-i",
                "target": kp.target,
                "targets": order,
                "loss": kp.loss,
                "output": "top1 label",
                "attributes": [a.key for a in ATTRIBUTES],
                "image_space": "pixels in [0, 1], [A, 1, 28, 28]; normalise with MNIST mean/std before querying",
                "read_out": "top-1 label d -> value index d if d < #values, else fallback[attribute]",
                "zoo": zoo_provenance(params, len(split["train"]), len(split["test"])),
                "test_accuracy": metrics,
                "provenance": {
                    "data_sha256": data_digest(
                        [Path(args.boxes), Path(args.models), Path(args.shards), Path(args.splits)]
                    )
                },
            }
            | cal.meta("validation accuracy per attribute and top-1 label (shrunk)", len(head["y_val"]), cp),
        )

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
