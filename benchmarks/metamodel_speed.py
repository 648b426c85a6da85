"""kennen-o stages, old path against new, on the same inputs in one command.

The workload is that of the ``kennen_o`` stage (every optimiser setting) plus the four
``kennen_o_sweep`` stages, with the params file's settings:

- ``baseline``: the code before parallel runs and early stopping, one training after another in this process
  (``train_and_evaluate`` with the fixed schedule, torch's default thread count), one seed,
  every sweep point trained (the headline's own points again).
- ``new``: what the stages now do: ``kennen_o.seeds`` seeds of the headline, early stopping
  (``kennen_o.early_stop``), all trainings of a stage as parallel one-thread tasks
  (``runs.evaluate_runs``), and the sweep points that are the headline's training read from
  its predictions.

Prints and writes wall time of each, their ratio, the work done (box-epochs), and the mean
class-balanced accuracy of every training point in both with its 95% bootstrap interval
and the paired difference new - baseline on the same test boxes. Usage, after
``dvc repro splits``:

    python benchmarks/metamodel_speed.py [--quick] [--params params.yaml] [--out reports/bench/metamodel_speed.json]

``--quick`` keeps the ``kennen_o`` stage and two points of the output sweep (the headline's
output, which the new path reads from the headline, and ``top1``). The wall
times depend on what else runs on the machine: the load average is recorded with them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kennen.config import base_seed, from_dict, load_params, section
from kennen.io import write_json
from kennen.metamodel.cv import units_of
from kennen.metamodel.kennen_o import Curve, EarlyStop, KennenOParams, Result, train_and_evaluate
from kennen.metamodel.runs import Run, evaluate_runs, scored, stage_runs
from kennen.metamodel.sweep import SWEEPS, SweepParams
from kennen.queries import load_outputs, read_boxes
from kennen.splits import SplitParams, read_split
from kennen.stats import paired_difference


def sweep_points(name: str, sp: SweepParams, kp: KennenOParams, outputs, splits, held) -> list[tuple[Any, Run]]:
    """The sweep points on the R split, as the stages ran them when this benchmark was written (the stages now
    sweep in the cross-validation folds; the benchmark keeps measuring the same workload)."""
    opt, r = kp.optimisers[kp.optimiser], splits["r"]
    if name == "n_train":
        return [
            (n, Run(r, kp.n_queries, kp.output, opt, n_train=n))
            for n in sorted({min(n, len(r["train"])) for n in sp.n_train})
        ]
    if name == "n_queries":
        return [(q, Run(r, q, kp.output, opt)) for q in sp.n_queries]
    if name == "output":
        return [(o, Run(r, kp.n_queries, o, opt)) for o in sp.outputs]
    return [(s, Run(splits[s], kp.n_queries, kp.output, opt)) for s in held if splits[s]["train"] and splits[s]["test"]]


def evaluate_points(points, kp, outputs, boxes, seed, r, headline) -> dict[Any, Result]:
    """Each point's result; the headline's own point (all R training boxes, its queries and output) read from
    ``headline`` = (test ids, y_true, y_pred) instead of trained again."""
    out = {}
    if headline is not None:
        ids, y_true, y_pred = headline
        for label, run in points:
            if (run.n_train is None or run.n_train >= len(r["train"])) and (run.n_queries, run.output) == (
                kp.n_queries,
                kp.output,
            ):
                out[label] = Result(
                    None, y_true, y_pred, scored(y_true, y_pred, units_of(boxes, ids), seed), None, tuple(ids)
                )
    todo = [(label, run) for label, run in points if label not in out]
    results = evaluate_runs([run for _, run in todo], outputs, boxes, kp.hidden, seed, kp.early_stop)
    return out | {label: res for (label, _), res in zip(todo, results, strict=True)}


def _workload(
    kp: KennenOParams, sp: SweepParams, outputs, splits, held, quick: bool
) -> dict[str, list[tuple[Any, Run]]]:
    """Stage -> (label, run) of its trainings (the kennen_o stage: one run per setting, replica 0)."""
    work = {"kennen_o": [(name, Run(splits["r"], kp.n_queries, kp.output, opt)) for name, opt in kp.optimisers.items()]}
    if quick:
        keep = [o for o in (kp.output, "top1") if o in sp.outputs]
        return work | {"output": sweep_points("output", SweepParams(outputs=tuple(keep)), kp, outputs, splits, held)}
    return work | {name: sweep_points(name, sp, kp, outputs, splits, held) for name in SWEEPS}


def _baseline(work, kp, outputs, boxes, seed, threads) -> tuple[dict, float, int, float]:
    torch.set_num_threads(threads)
    results, box_epochs = {}, 0
    start, cpu = time.perf_counter(), _cpu()
    for stage, points in work.items():
        for label, run in points:
            t = time.perf_counter()
            res = train_and_evaluate(
                outputs, boxes, run.split, run.n_queries, run.output, kp.hidden, run.opt, seed, run.n_train
            )
            results[stage, label] = res
            box_epochs += res.curve.n_fit * res.curve.epochs
            _say(f"baseline {stage} {label}: mean {res.metrics['acc.mean']:.2f}, {time.perf_counter() - t:.0f} s")
    return results, time.perf_counter() - start, box_epochs, _cpu() - cpu


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the pool's workers, once joined)."""
    return sum(
        r.ru_utime + r.ru_stime for r in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {msg}", file=sys.stderr, flush=True)


def _box_epochs(curve: Curve) -> int:
    """Boxes x epochs of one training (validation passes counted as epochs of the carve: an upper bound)."""
    return (curve.n_fit + curve.n_val) * curve.epochs + (curve.n_fit + curve.n_val) * curve.refit_epochs


def _new(work, kp, outputs, boxes, seed, r) -> tuple[dict, float, int, dict]:
    results, box_epochs = {}, 0
    start, cpu = time.perf_counter(), _cpu()
    head = kp.optimiser
    labels, runs = stage_runs(kp, r)
    out = evaluate_runs(runs, outputs, boxes, kp.hidden, seed, kp.early_stop)
    for name, res in zip(labels, out, strict=True):
        box_epochs += _box_epochs(res.curve)
        results.setdefault(("kennen_o", name), res)
    seeds = [res.metrics["acc.mean"] for name, res in zip(labels, out, strict=True) if name == head]
    epochs = {name: res.curve.epochs for name, res in zip(labels, out, strict=True)}
    headline = (list(r["test"]), results["kennen_o", head].y_true, results["kennen_o", head].y_pred)
    for stage, points in work.items():
        if stage != "kennen_o":
            scores = evaluate_points(
                points, kp, outputs, boxes, seed, r, headline if stage != "extrapolation" else None
            )
            results |= {(stage, label): res for label, res in scores.items()}
            box_epochs += sum(_box_epochs(res.curve) for res in scores.values() if res.curve is not None)
            epochs |= {f"{stage}:{label}": res.curve.epochs for label, res in scores.items() if res.curve is not None}
    elapsed = time.perf_counter() - start
    extra = {"cpu_s": round(_cpu() - cpu, 1), "headline_seeds_acc_mean": seeds, "epochs_trained": epochs}
    return results, elapsed, box_epochs, extra


def _compare(base: dict, new: dict, boxes: list[dict[str, Any]], seed: int) -> list[dict]:
    points = []
    for key, b in base.items():
        n = new[key]
        units = units_of(boxes, b.test_ids)
        mb, mn = scored(b.y_true, b.y_pred, units, seed), n.metrics
        diff = paired_difference(b.y_true, n.y_pred, b.y_pred, units, seed=seed)
        points.append({"stage": key[0], "point": key[1], "baseline": mb["acc.mean"], "baseline_low": mb["acc.mean_low"],
                       "baseline_high": mb["acc.mean_high"], "new": mn["acc.mean"], "new_low": mn["acc.mean_low"],
                       "new_high": mn["acc.mean_high"], "diff": diff["diff"], "diff_low": diff["low"],
                       "diff_high": diff["high"], "beyond_noise": bool(diff["beyond_noise"])})  # fmt: skip
    return points


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--outputs", default="data/queries/outputs.npz")
    p.add_argument("--boxes", default="data/queries/boxes.csv")
    p.add_argument("--splits", default="data/splits")
    p.add_argument("--quick", action="store_true", help="the kennen_o stage and 2 points of the output sweep")
    p.add_argument(
        "--baseline-threads", type=int, default=torch.get_num_threads(), help="torch threads of the baseline"
    )
    p.add_argument("--early-stop", action="append", default=[], metavar="JSON",
                   help='new-path variant(s), e.g. \'{"val_fraction": 0.1, "patience": 10}\' (default: the params\')')  # fmt: skip
    p.add_argument("--out", default="reports/bench/metamodel_speed.json")
    args = p.parse_args()
    params = load_params(args.params)
    kp = section(KennenOParams, params, "kennen_o")
    sp = section(SweepParams, params, "kennen_o_sweep")
    held = section(SplitParams, params, "splits").extrapolation
    outputs, _ = load_outputs(Path(args.outputs))
    boxes = read_boxes(Path(args.boxes))
    splits = {name: read_split(Path(args.splits), name) for name in ("r", *held)}
    seed = base_seed(params)
    work = _workload(kp, sp, outputs, splits, held, args.quick)
    stops = [from_dict(EarlyStop, json.loads(v), "--early-stop") for v in args.early_stop] or [kp.early_stop]
    load_before = os.getloadavg()
    _say(f"start: {sum(len(p) for p in work.values())} baseline trainings")
    variants = []
    for stop in stops:
        kv = dataclasses.replace(kp, early_stop=stop)
        new, t_new, work_new, extra = _new(work, kv, outputs, boxes, seed, splits["r"])
        _say(f"new {stop}: {t_new:.0f} s, {extra['cpu_s']:.0f} CPU s")
        variants.append({"early_stop": dataclasses.asdict(stop), "wall_s": round(t_new, 1), "seeds": kp.seeds,
                         "box_epochs": work_new, "_results": new, "_wall_s": t_new} | extra)  # fmt: skip
    base, t_base, work_base, cpu_base = _baseline(work, kp, outputs, boxes, seed, args.baseline_threads)
    load_after = os.getloadavg()
    for v in variants:
        v["points"] = _compare(base, v.pop("_results"), boxes, seed)
        v["acc_mean_over_points"] = round(float(np.mean([q["new"] for q in v["points"]])), 2)
        v["speedup"] = round(t_base / v.pop("_wall_s"), 2)  # the unrounded time: a run under 0.05 s rounds to 0
        v["cpu_ratio"] = round(cpu_base / max(v["cpu_s"], 1e-9), 2)
        v["work_ratio"] = round(work_base / max(v["box_epochs"], 1), 2)
        v["mean_diff"] = round(float(np.mean([q["diff"] for q in v["points"]])), 2)
        v["points_beyond_noise"] = sum(q["beyond_noise"] for q in v["points"])
    first = variants[0]
    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, other jobs running (see load averages)",
        "torch": torch.__version__,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "n_train_boxes": len(splits["r"]["train"]),
        "n_test_boxes": len(splits["r"]["test"]),
        "baseline": {
            "wall_s": round(t_base, 1),
            "cpu_s": round(cpu_base, 1),
            "threads": args.baseline_threads,
            "box_epochs": work_base,
            "acc_mean_over_points": round(float(np.mean([q["baseline"] for q in first["points"]])), 2),
        },  # fmt: skip
        "new": first,
        "variants": variants[1:],
        "speedup": first["speedup"],
    }
    write_json(args.out, report)
    b = report["baseline"]
    print(f"baseline: {b['wall_s']:.0f} s, {b['cpu_s']:.0f} CPU s ({b['threads']} threads), {b['box_epochs']} box-epochs, "
          f"mean over points {b['acc_mean_over_points']}")  # fmt: skip
    for v in variants:
        print(f"\nnew, early_stop {v['early_stop']}, {v['seeds']} seeds of the headline "
              f"(their means {v['headline_seeds_acc_mean']}):")  # fmt: skip
        print(
            f"{'stage':14s} {'point':10s} {'baseline [95% CI]':24s} {'new [95% CI]':24s} new - baseline [paired 95% CI]"
        )
        for q in v["points"]:
            print(f"{q['stage']:14s} {str(q['point']):10s} {q['baseline']:6.2f} [{q['baseline_low']:.1f}, "
                  f"{q['baseline_high']:.1f}]{'':5s} {q['new']:6.2f} [{q['new_low']:.1f}, {q['new_high']:.1f}]{'':5s} "
                  f"{q['diff']:+6.2f} [{q['diff_low']:+.1f}, {q['diff_high']:+.1f}]{' *' if q['beyond_noise'] else ''}")  # fmt: skip
        print(f"new: {v['wall_s']:.0f} s, {v['cpu_s']:.0f} CPU s, {v['box_epochs']} box-epochs, mean over points "
              f"{v['acc_mean_over_points']}; speedup {v['speedup']}x (CPU {v['cpu_ratio']}x, work {v['work_ratio']}x); "
              f"mean difference {v['mean_diff']:+.2f}, "
              f"{v['points_beyond_noise']} of {len(v['points'])} points beyond noise (*)")  # fmt: skip
    print(f"load average {load_before[0]:.1f} -> {load_after[0]:.1f}; wrote {args.out}")


if __name__ == "__main__":
    main()
