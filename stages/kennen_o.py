"""Stage ``kennen_o``: train kennen-o on the R split with every optimiser setting; report the headline one.

Writes the headline metrics (``acc.<attribute>``, ``acc.mean``; plus
``<setting>.acc.mean`` for every setting), a per-setting table, per-attribute
confusion matrices, the trained metamodel (safetensors + JSON) and DVCLive
training curves.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from dvclive import Live

from kennen import data as mnist_data
from kennen.attributes import ATTRIBUTES
from kennen.config import base_seed, load_params, section
from kennen.io import write_json
from kennen.metamodel.artifact import save_metamodel, zoo_provenance
from kennen.metamodel.kennen_o import KennenOParams, train_and_evaluate
from kennen.metamodel.report import write_confusions, write_table
from kennen.queries import load_outputs, read_boxes
from kennen.splits import read_split
from stages._common import parser, run

log = logging.getLogger("kennen.kennen_o")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    for name in ("data", "outputs", "boxes", "splits", "metrics", "plots", "figures", "model", "live"):
        p.add_argument(f"--{name}", required=True)

    def body(args) -> None:
        params = load_params(args.params)
        kp = section(KennenOParams, params, "kennen_o")
        outputs, query_index = load_outputs(Path(args.outputs))
        boxes, split = read_boxes(Path(args.boxes)), read_split(Path(args.splits), "r")
        seed = base_seed(params)
        metrics: dict[str, float] = {}
        table = []
        headline = None
        for name, opt in kp.optimisers.items():
            live = Live(args.live, dvcyaml=False, save_dvc_exp=False, report=None) if name == kp.optimiser else None

            def on_epoch(epoch: int, loss: float, live=live) -> None:
                if live is not None:
                    live.log_metric("train/loss", loss)
                    live.next_step()

            result = train_and_evaluate(
                outputs, boxes, split, kp.n_queries, kp.output, kp.hidden, opt, seed, on_epoch=on_epoch
            )
            if live is not None:
                live.end()
            log.info("kennen-o [%s]: mean %.2f %s", name, result.metrics["acc.mean"], result.metrics)
            table.append({"setting": name} | {k.removeprefix("acc."): v for k, v in result.metrics.items()})
            metrics[f"{name}.acc.mean"] = result.metrics["acc.mean"]
            if name == kp.optimiser:
                headline = result
        metrics = headline.metrics | {"n_train": len(split["train"]), "n_test": len(split["test"])} | metrics
        write_json(args.metrics, metrics)
        write_table(Path(args.plots) / "optimisers.csv", table)
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
                "test_accuracy": headline.metrics,
            },
        )

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
