"""Stage ``kennen_io``: kennen-io on the R split (Table 2) and on the E splits named in ``kennen_io.splits`` (Table 3).

One task per split (and per extra metamodel seed of the R split, ``kennen_io.seeds``), run in
parallel on the executor (``KENNEN_EXECUTOR``), the R split's first. Writes the R split's metrics
(``acc.<attribute>``, ``acc.mean``, each with its 95% bootstrap interval over the test boxes
``_low``/``_high``; ``gap_vs_o.*``, kennen-io minus its warm start, i.e. kennen-o with kennen-io's seed,
on the same test boxes; ``queries.moved`` and ``query_phase<i>.*``, how far the queries moved and what
that did to the training loss; ``seeds.*`` with two or more seeds), every E split's mean with its
interval and its relative accuracy (``<split>.acc_mean``, ``<split>.relative``), the Table 3 rows, a
per-phase log (``phases.csv``), R confusion matrices, the R model (MLP weights and its queries,
``models/kennen_io.safetensors``), a PNG of sample queries before and after training, and DVCLive
loss curves (R split). Every split's training holds out ``calibration.val_fraction`` of its boxes (ours);
the R model is calibrated on them (``ece_before``/``ece_after``, abstention and out-of-zoo figures,
``reliability.csv``, ``risk_coverage.csv``, ``reliability.png``; ``kennen.metamodel.calibration``).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import torch
from dvclive import Live

from kennen import data as mnist_data
from kennen.attributes import ATTRIBUTES
from kennen.config import base_seed, load_params, section
from kennen.errors import KennenError
from kennen.io import write_json
from kennen.metamodel.artifact import data_digest, save_metamodel, zoo_provenance
from kennen.metamodel.calibration import CalibrationParams, calibrate_scores
from kennen.metamodel.crafted import KENNEN_IO_OFFSET, ZooSource
from kennen.metamodel.kennen_io import KennenIOParams, e_row, phase_rows, r_metrics, run_task, seed_metrics, tasks
from kennen.metamodel.kennen_o import KennenO, KennenOParams, accuracies
from kennen.metamodel.report import plot_bars, plot_images, plot_reliability, write_confusions, write_table
from kennen.paper import TABLE3_KENNEN_IO
from kennen.parallel import run_tasks
from kennen.queries import load_outputs, read_boxes
from kennen.splits import SplitParams, read_split
from stages._common import parser, run

log = logging.getLogger("kennen.kennen_io")
SAMPLE = 12  # queries shown in the figure


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    for name in ("data", "outputs", "boxes", "models", "shards", "splits", "metrics", "plots", "figures", "model"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--live", required=True)

    def body(args) -> None:
        params = load_params(args.params)
        kp = section(KennenIOParams, params, "kennen_io")
        ko = section(KennenOParams, params, "kennen_o")
        cp = section(CalibrationParams, params, "calibration")
        held = section(SplitParams, params, "splits").extrapolation
        unknown = [s for s in kp.splits if s != "r" and s not in held]
        if unknown:
            raise KennenError(f"kennen_io.splits: {unknown[0]!r} is not r or a split of splits.extrapolation")
        seed = base_seed(params) + KENNEN_IO_OFFSET
        boxes = read_boxes(Path(args.boxes))
        _, query_index = load_outputs(Path(args.outputs))
        if kp.n_queries > len(query_index):
            raise KennenError(
                f"kennen_io.n_queries: {kp.n_queries} exceeds the {len(query_index)} stored queries (queries.n_max)"
            )
        mnist = mnist_data.load(Path(args.data))
        # kennen-io starts from kennen-o's queries: the first n query images.
        init = mnist_data.normalise(mnist.test_images[query_index[: kp.n_queries]])
        splits = {name: read_split(Path(args.splits), name) for name in kp.splits}
        if not splits["r"]["train"] or not splits["r"]["test"]:
            raise KennenError(f"{args.splits}: the R split has no training or no test boxes")
        # An E split that this zoo cannot fill gets an empty row, as in kennen_o_sweep.
        runnable = [n for n, s in splits.items() if s["train"] and s["test"]]
        source = ZooSource.at(Path(args.shards), Path(args.models), boxes)
        opt = ko.optimisers[ko.optimiser]

        job = functools.partial(
            run_task, source=source, splits=splits, init=init, params=kp, hidden=ko.hidden, opt=opt, seed=seed,
            val_fraction=cp.val_fraction,
        )  # fmt: skip
        todo = tasks(kp, runnable)
        results: dict[tuple[str, int], dict] = {}
        for task, result in run_tasks(job, todo, len(todo)):
            results[task] = result
            mean = accuracies(result["y_true"], result["y_pred"])["acc.mean"]
            log.info("kennen-io [%s, seed %d]: mean %.2f", *task, mean)

        r = results["r", 0]
        metrics = r_metrics(r) | {"n_train": len(splits["r"]["train"]), "n_test": len(splits["r"]["test"])}
        metrics |= seed_metrics([results["r", k] for k in range(kp.seeds)])
        model = KennenO(r["features"]["test"].shape[1], ko.hidden)
        model.load_state_dict(r["model"])
        f = r["features"]
        cal = calibrate_scores(model, (f["val"], r["y_val"]), (f["test"], r["y_true"]), f["train"], cp,
                               base_seed(params), "kennen-io")  # fmt: skip
        log.info("kennen-io calibration: ECE %.3f -> %.3f; min confidence %.2f answers %.1f%% at %.1f%%",
                 cal.metrics["ece_before"], cal.metrics["ece_after"], cal.min_confidence,
                 cal.metrics["abstain.coverage"], cal.metrics["abstain.accuracy"])  # fmt: skip
        metrics |= cal.metrics | {"n_fit": r["n_fit"]}
        rows = []
        for name in kp.splits:
            if name == "r":
                continue
            if (name, 0) in results:
                row = e_row(name, splits[name], held[name], results[name, 0], metrics)
                metrics |= {f"{name}.{k}": row[k] for k in ("relative", "acc_mean", "acc_mean_low", "acc_mean_high")}
            else:
                log.warning("kennen-io [%s]: no training or no test boxes in this zoo", name)
                n_tr, n_te, nan = len(splits[name]["train"]), len(splits[name]["test"]), float("nan")
                row = {"split": name, "n_train": n_tr, "n_test": n_te, "acc_mean": nan, "r_acc_mean": nan,
                       "relative": nan, "acc_mean_low": nan, "acc_mean_high": nan}  # fmt: skip
            rows.append(row)
        write_json(args.metrics, metrics)
        plots, figures = Path(args.plots), Path(args.figures)
        write_table(plots / "phases.csv", phase_rows([results[t] for t in todo]))
        write_table(plots / "reliability.csv", cal.reliability)
        write_table(plots / "risk_coverage.csv", cal.risk_coverage)
        plot_reliability(cal.reliability, figures / "reliability.png", "kennen-io: test boxes, all attributes")
        if rows:
            write_table(plots / "extrapolation.csv", rows)
            plot_bars(
                rows,
                "split",
                "relative",
                "kennen-io on E splits, relative to R (R = 100, chance = 0)",
                figures / "extrapolation.png",
                TABLE3_KENNEN_IO,
            )
        write_confusions(
            r["y_true"], r["y_pred"], plots / "confusion", figures / "confusion.png",
            f"kennen-io ({kp.n_queries} learned queries, prob)",
        )  # fmt: skip
        n = min(SAMPLE, kp.n_queries)
        start = (init[:n] * mnist_data.STD + mnist_data.MEAN).clip(0, 1)
        plot_images(
            np.concatenate([start, r["queries"][:n]]),
            [f"q{i} start" for i in range(n)] + [f"q{i} learned" for i in range(n)],
            figures / "queries.png",
            f"kennen-io: the first {n} of {kp.n_queries} queries, before (top) and after training (bottom)",
            cols=n,
        )
        live = Live(args.live, dvcyaml=False, save_dvc_exp=False, report=None)
        for point in r["curve"]:
            live.log_metric(f"train/{point['phase']}_loss", point["loss"])
            live.next_step()
        live.end()

        tensors = {f"mlp.{k}": v for k, v in r["model"].items()} | {"queries": torch.from_numpy(r["queries"])}
        tensors |= cal.tensors
        save_metamodel(
            Path(args.model),
            tensors,
            {
                "method": "kennen-io",
                "n_queries": kp.n_queries,
                "output": "prob",
                "hidden": ko.hidden,
                "optimiser": ko.optimiser,
                "schedule": [[ph.train, ph.epochs] for ph in kp.schedule],
                "query_boxes": kp.query_boxes,
                "seed": r["seed"],
                "attributes": [a.key for a in ATTRIBUTES],
                "image_space": "pixels in [0, 1], [Q, 1, 28, 28]; normalise with MNIST mean/std before querying",
                "zoo": zoo_provenance(params, len(splits["r"]["train"]), len(splits["r"]["test"])),
                "test_accuracy": metrics,
                "provenance": {
                    "data_sha256": data_digest(
                        [Path(args.boxes), Path(args.models), Path(args.shards), Path(args.splits)]
                    )
                },
            }
            | cal.meta("temperature scaling per attribute", len(r["y_val"]), cp),
        )

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
