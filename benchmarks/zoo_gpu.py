"""Zoo training on one device: models per GPU-hour of the loop and fused trainers, and the paper zoo's cost.

Trains a fixed sample of zoo models with the pipeline's two trainers on one
device (``--device cuda``, or ``cpu`` for a test), in the default regime
(``params.yaml``'s ``train_zoo``: 2 epochs on the 60,000-image pool), and
prints and writes models per hour of the device for that regime and for the
paper's (``profiles/paper.yaml``: 100 epochs), test accuracies, and projections
for the paper zoo (10,000 models x 100 epochs) and a 10,000-model zoo of the
default regime, next to the paper's roughly 10 models per GPU-hour. Usage:

    python benchmarks/zoo_gpu.py --device cuda [--budget-s 200] [--out reports/bench/zoo_gpu.json]
    python benchmarks/zoo_gpu.py --render reports/bench/zoo_gpu.json   # the tables of docs/performance.md
    python benchmarks/zoo_gpu.py --reproject REPORT.json --out reports/bench/zoo_gpu.json   # projections again
    python benchmarks/zoo_gpu.py --device cpu --pool 400 --epochs 1 --groups 2 --loop-models 3 --fuse-max 3   # seconds

The sample is drawn as the paper profile's zoo is: its 10,000-model sample
table, shard 0, grouped as ``train_zoo`` groups a shard (``fusion_groups``
with the profile's ``fuse_max``). ``--groups`` of those groups, spread over the
structures, are trained by ``fused``; ``--loop-models`` of their members, spread
evenly, are trained by ``loop`` (one model after the other, as ``train_zoo``
runs it on a GPU) and by ``fused_small``: the fused trainer on those same models,
whose groups are then as small as a 100-model shard makes them. Models are
trained one task after the other, each timed alone (synchronised), after a
warm-up on short subsets; ``--budget-s`` stops starting new tasks of a phase
once its share of the budget is spent, so the JSON says how many were measured.

The paper regime is extrapolated, not trained: each measured task is timed
again with 0 epochs (initialisation, the test pass, copying weights back), and
a task of ``E`` epochs costs ``fixed + E x per_epoch``. This is exact up to
timing noise, because both trainers do the same steps in every epoch (a fused
group steps until its member with the most steps per epoch is done).

Two projections: the zoo divided by the sample's models per hour, and the
zoo's own steps (every model's, or every fused group's as ``train_zoo`` forms
them shard by shard) priced at the measured seconds per step, plus the fixed
cost per model. The second does not depend on how many steps the sample's
models happen to take (subset and batch sizes).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from kennen.config import base_seed, load_params, section
from kennen.io import read_json, write_json
from kennen.zoo.fused import fusion_groups, train_group
from kennen.zoo.sample import SampleParams, sample_zoo
from kennen.zoo.stacked import fusion_key
from kennen.zoo.train import TrainData, TrainParams, TrainResult, TrainSpec, load_train_data, train_model

# The paper: about 5 minutes per model on a GeForce GTX TITAN, 40 GPU-days for 10,000 models.
PAPER_GPU_HOURS = 40 * 24
PAPER_MODELS_PER_GPU_HOUR = 10_000 / PAPER_GPU_HOURS
DEAD = 11.5  # test accuracy at or below this is a constant classifier (9.8% is the most frequent digit)
SMALL_SHARD = 100  # fused_small stands for the fused trainer on shards of 100 models (groups of about 3)
SHARES = {"loop": 0.2, "fused_small": 0.15, "fused": 0.55}  # of --budget-s; the 0-epoch timings use the rest


def _alternate(items: Sequence) -> list:
    """``items`` from both ends inwards, so that a prefix cut by the budget still spans the sorted structures."""
    out, lo, hi = [], 0, len(items) - 1
    while lo <= hi:
        out.append(items[lo])
        if hi != lo:
            out.append(items[hi])
        lo, hi = lo + 1, hi - 1
    return out


def pick(paper: dict, fuse_max: int, n_groups: int, n_loop: int, epochs: int) -> tuple[list, list]:
    """Fused groups of the paper profile's shard 0 (spread over structures) and ``n_loop`` of their members."""
    sp = section(SampleParams, paper, "sample_zoo")
    rows = [r for r in sample_zoo(sp, base_seed(paper)) if r["shard"] == 0]
    groups = fusion_groups([TrainSpec.of(r, epochs) for r in rows], fuse_max)  # sorted by structure
    chosen = [groups[i] for i in sorted(set(np.linspace(0, len(groups) - 1, n_groups).round().astype(int)))]
    members = [s for g in chosen for s in g]
    loop = [members[i] for i in sorted(set(np.linspace(0, len(members) - 1, n_loop).round().astype(int)))]
    return _alternate(chosen), _alternate(loop)


def steps_per_epoch(task: Sequence[TrainSpec], pool: int) -> int:
    """Optimiser steps in one epoch of a task: a loop model's, or a fused group's (its member with the most)."""
    return max(math.ceil(pool // {"all": 1, "half": 2, "quarter": 4}[s.split.split("_")[0]] / s.bs) for s in task)


def zoo_steps(paper: dict, fuse_max: int, pool: int) -> dict[str, int]:
    """Steps per epoch of the whole paper zoo as each trainer runs it (fused: groups formed shard by shard)."""
    sp = section(SampleParams, paper, "sample_zoo")
    specs = [TrainSpec.of(r, 1) for r in sample_zoo(sp, base_seed(paper))]  # in model-id order, so shards are slices

    def grouped(size: int) -> list[tuple[TrainSpec, ...]]:
        return [g for i in range(0, len(specs), size) for g in fusion_groups(specs[i : i + size], fuse_max)]

    tasks = {"loop": [(s,) for s in specs], "fused_small": grouped(SMALL_SHARD), "fused": grouped(sp.shard_size)}
    return {name: sum(steps_per_epoch(t, pool) for t in ts) for name, ts in tasks.items()}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(job: Callable[[], list[TrainResult]], device: str) -> tuple[list[TrainResult], float]:
    _sync(device)
    start = time.perf_counter()
    results = job()
    _sync(device)
    return results, time.perf_counter() - start


def _run(trainer: str, task: tuple[TrainSpec, ...], data: TrainData, device: str) -> list[TrainResult]:
    return [train_model(task[0], data, device)] if trainer == "loop" else train_group(task, data, device)


def measure(trainer: str, tasks: list[tuple[TrainSpec, ...]], data: TrainData, device: str, budget_s: float) -> dict:
    """Train ``tasks`` one after the other until the budget is spent, then time the measured ones with 0 epochs."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    done, walls, start = [], [], time.perf_counter()
    for task in tasks:
        if done and budget_s and time.perf_counter() - start > budget_s:
            break
        results, wall = _timed(lambda t=task: _run(trainer, t, data, device), device)
        done.append((task, results))
        walls.append(wall)
    zero = []
    for task, _ in done:
        task = tuple(dataclasses.replace(s, epochs=0) for s in task)
        zero.append(_timed(lambda t=task: _run(trainer, t, data, device), device)[1])
    results = [r for _, rs in done for r in rs]
    return {
        "tasks": len(done),
        "tasks_planned": len(tasks),
        "group_sizes": [len(t) for t, _ in done],
        "structures": [list(fusion_key(t[0].net)) for t, _ in done],  # (pool, ks, n_conv, n_fc) of each task
        "task_wall_s": [round(w, 3) for w in walls],
        "task_fixed_s": [round(w, 3) for w in zero],
        "models": len(results),
        "wall_s": sum(walls),
        "fixed_s": sum(zero),
        "gpu_peak_mib": round(torch.cuda.max_memory_allocated() / 2**20) if device == "cuda" else None,
        "test_acc": {r.model_id: round(r.test_acc, 2) for r in results},
        "diverged": sum(r.diverged for r in results),
    }


def rates(m: dict, epochs: int, paper_epochs: int) -> dict:
    """Models per hour in the measured regime and, extrapolated per epoch, in the paper's."""
    per_epoch = max(m["wall_s"] - m["fixed_s"], 0.0) / epochs
    paper_s = m["fixed_s"] + paper_epochs * per_epoch
    accs = list(m["test_acc"].values())
    return {
        "s_per_model": round(m["wall_s"] / m["models"], 4),
        "models_per_hour": round(3600 * m["models"] / m["wall_s"], 1),
        "paper_s_per_model": round(paper_s / m["models"], 3),
        "paper_models_per_hour": round(3600 * m["models"] / paper_s, 2),
        "mean_test_acc": round(statistics.fmean(accs), 2),
        "median_test_acc": round(statistics.median(accs), 2),
        "dead": sum(a <= DEAD for a in accs),
    }


def paired(a: dict, b: dict) -> dict:
    """Test accuracy of ``a`` minus ``b`` on the models both trained (same seeds, batches and masks)."""
    ids = sorted(set(a) & set(b))
    d = np.array([a[i] - b[i] for i in ids])
    return {
        "models": len(ids),
        "mean": round(float(d.mean()), 2),
        "within_1_point": int((np.abs(d) <= 1).sum()),
        "max_abs": round(float(np.abs(d).max()), 2),
    }


def _warm_up(plan: dict[str, list[tuple[TrainSpec, ...]]], data: TrainData, device: str, images: int) -> None:
    """Every kernel shape once (CUDA's lazy loading, cuDNN's choices) on subsets cut to ``images``."""
    short = dataclasses.replace(data, subsets={k: v[:images] for k, v in data.subsets.items()})
    for trainer, tasks in plan.items():
        for task in tasks:
            _run(trainer, tuple(dataclasses.replace(s, epochs=1) for s in task), short, device)


def machine(device: str) -> dict:
    out = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    out |= {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn_tf32": torch.backends.cudnn.allow_tf32}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        out |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1)}
    return out


def run(args: argparse.Namespace) -> dict:
    default, paper = load_params(args.params), load_params(args.paper)
    dtp, ptp = section(TrainParams, default, "train_zoo"), section(TrainParams, paper, "train_zoo")
    epochs, pool = args.epochs or dtp.epochs, args.pool or dtp.pool_size
    if not args.pool and ptp.pool_size != dtp.pool_size:
        raise SystemExit(f"{args.paper}: train_zoo.pool_size {ptp.pool_size} differs from {args.params}'s {pool}")
    fuse_max = args.fuse_max or ptp.fuse_max
    groups, loop = pick(paper, fuse_max, args.groups, args.loop_models, epochs)
    zoo = zoo_steps(paper, fuse_max, pool)
    data = load_train_data(args.data, pool, dtp.perm_seed, dtp.test_batch, args.device)
    plan = {"loop": [(s,) for s in loop], "fused_small": _alternate(fusion_groups(loop, fuse_max)), "fused": groups}
    print(
        f"{args.device}: {sum(map(len, groups))} models in {len(groups)} fused groups of {args.paper}'s shard 0, "
        f"{len(loop)} of them by loop and fused_small; {epochs} epoch(s) on a {pool}-image pool",
        flush=True,
    )
    start = time.perf_counter()
    if args.warmup_images:
        _warm_up(plan, data, args.device, args.warmup_images)
    print(f"warm-up: {time.perf_counter() - start:.1f} s", flush=True)
    report = {
        "command": " ".join(["python", "benchmarks/zoo_gpu.py", *args.argv]),
        "device": args.device,
        "machine": machine(args.device),
        "date": time.strftime("%Y-%m-%d"),
        "sample": {
            "profile": args.paper,
            "shard": 0,
            "fuse_max": fuse_max,
            "groups": [list(fusion_key(g[0].net)) for g in groups],
        },
        "regimes": {
            "default": {"params": args.params, "epochs": epochs, "pool_size": pool, "measured": "trained in full"},
            "paper": {
                "params": args.paper,
                "epochs": ptp.epochs,
                "pool_size": pool,
                "measured": f"extrapolated: fixed + {ptp.epochs} x per-epoch time of the {epochs}-epoch runs",
            },
        },
        "paper_reported": {
            "gpu": "GeForce GTX TITAN",
            "minutes_per_model": 5,
            "zoo_gpu_hours": PAPER_GPU_HOURS,
            "models_per_gpu_hour": round(PAPER_MODELS_PER_GPU_HOUR, 1),
        },
        "trainers": {},
    }
    for name, tasks in plan.items():
        m = measure(name, tasks, data, args.device, args.budget_s * SHARES[name])
        m |= rates(m, epochs, ptp.epochs)
        report["trainers"][name] = m
        print(
            f"{name:12s} {m['models']:4d} models in {m['tasks']:3d} task(s): {m['wall_s']:7.1f} s "
            f"(0 epochs: {m['fixed_s']:5.1f} s)  {m['models_per_hour']:9.1f} models/h default, "
            f"{m['paper_models_per_hour']:7.2f} models/h paper (extrapolated)  mean test acc {m['mean_test_acc']:.2f}%",
            flush=True,
        )
        write_json(args.out, finish(report, paper, zoo))
    return report


def _sig(x: float) -> float:
    """``x`` to 4 significant digits."""
    return float(f"{x:.4g}")


def finish(report: dict, paper: dict, zoo: dict[str, int]) -> dict:
    """Paired accuracies against ``loop`` and the projections, from what has been measured so far.

    Two projections: ``hours`` divides the zoo by the measured models per hour; ``hours_by_steps`` prices the
    zoo's own steps (``zoo``) at the measured seconds per step, since a sample of a few dozen models can have
    more or fewer steps per model (subset sizes, batch sizes) than the zoo.
    """
    t, reg = report["trainers"], report["regimes"]
    pool, fuse_max = reg["default"]["pool_size"], report["sample"]["fuse_max"]
    by_id = {r["model_id"]: r for r in sample_zoo(section(SampleParams, paper, "sample_zoo"), base_seed(paper))}
    for name, m in t.items():
        specs = [TrainSpec.of(by_id[int(i)], 1) for i in m["test_acc"]]
        tasks = [(s,) for s in specs] if name == "loop" else fusion_groups(specs, fuse_max)
        m["steps"] = reg["default"]["epochs"] * sum(steps_per_epoch(task, pool) for task in tasks)
        m["ms_per_step"] = round(1000 * (m["wall_s"] - m["fixed_s"]) / m["steps"], 3)
        if name != "loop" and "loop" in t:
            m["paired_to_loop"] = paired(m["test_acc"], t["loop"]["test_acc"])
    n = section(SampleParams, paper, "sample_zoo").n_models

    def by_steps(m: dict, name: str, epochs: int) -> float:
        return _sig((n * m["fixed_s"] / m["models"] + epochs * zoo[name] * m["ms_per_step"] / 1000) / 3600)

    epochs = {"paper_zoo": reg["paper"]["epochs"], "default_zoo": reg["default"]["epochs"]}
    report["projections"] = {
        "models": n,
        "what": "device-hours for the zoo: paper_zoo = 100 epochs (extrapolated), default_zoo = the default regime",
        "zoo_steps_per_epoch": zoo,
        "hours": {
            name: {"paper_zoo": _sig(n / m["paper_models_per_hour"]), "default_zoo": _sig(n / m["models_per_hour"])}
            for name, m in t.items()
        },
        "hours_by_steps": {name: {k: by_steps(m, name, e) for k, e in epochs.items()} for name, m in t.items()},
        "paper_reported_hours": PAPER_GPU_HOURS,
    }
    return report


def render(report: dict, path: str = "reports/bench/zoo_gpu.json") -> str:
    """The markdown tables of ``docs/performance.md``, stamped with the command and the machine."""
    mc, reg, unit = report["machine"], report["regimes"], "GPU" if report["device"] == "cuda" else "CPU-process"
    where = mc.get("gpu", mc["cpu"]) + f", torch {mc['torch']}, {report['date']}"
    lines = [
        f"| trainer | models (tasks) | {reg['default']['epochs']} epochs: s per model | ms per step "
        f"| models per {unit}-hour | {reg['paper']['epochs']} epochs (extrapolated): models per {unit}-hour "
        "| mean / median test acc. (dead) | paired to loop: mean (within 1 point) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in report["trainers"].items():
        p = m.get("paired_to_loop")
        pair = f"{p['mean']:+.2f} ({p['within_1_point']}/{p['models']})" if p else "–"
        lines.append(
            f"| `{name}` | {m['models']} ({m['tasks']}) | {m['s_per_model']:.3f} | {m['ms_per_step']:.2f} "
            f"| {m['models_per_hour']:,.0f} | {m['paper_models_per_hour']:,.1f} "
            f"| {m['mean_test_acc']:.2f} / {m['median_test_acc']:.2f} ({m['dead']}) | {pair} |"
        )
    pr = report["projections"]
    zoo = f"{pr['models']:,} models x"
    lines += [
        "",
        f"| trainer | paper zoo ({zoo} {reg['paper']['epochs']} epochs): from models per hour / from the zoo's steps "
        f"| {zoo} {reg['default']['epochs']} epochs: from models per hour / from the zoo's steps |",
        "|---|---|---|",
    ]
    for name, h in pr["hours"].items():
        s = pr["hours_by_steps"][name]
        lines.append(
            f"| `{name}` | {h['paper_zoo']:,.1f} / {s['paper_zoo']:,.1f} {unit}-hours "
            f"| {h['default_zoo']:,.2f} / {s['default_zoo']:,.2f} {unit}-hours |"
        )
    lines.append(
        f"| the paper (GTX TITAN, about 10 models per GPU-hour) | {pr['paper_reported_hours']:,} GPU-hours | – |"
    )
    lines += ["", f"(`{report['command']}`; {where}; `{path}`.)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    p.add_argument("--params", default="params.yaml", help="the default regime (train_zoo.epochs, pool_size)")
    p.add_argument("--paper", default="profiles/paper.yaml", help="the paper regime and the zoo sampled from")
    p.add_argument("--data", default="data/mnist.npz")
    p.add_argument("--groups", type=int, default=8, help="fused groups of the paper profile's shard 0")
    p.add_argument("--loop-models", type=int, default=32, help="of their members, trained by loop and fused_small")
    p.add_argument("--fuse-max", type=int, default=0, help="default: the paper profile's train_zoo.fuse_max")
    p.add_argument("--epochs", type=int, default=0, help="default: the default profile's train_zoo.epochs")
    p.add_argument("--pool", type=int, default=0, help="default: the default profile's train_zoo.pool_size")
    p.add_argument("--warmup-images", type=int, default=512, help="0: no warm-up")
    p.add_argument("--budget-s", type=float, default=0, help="stop starting new tasks past this (0: none)")
    p.add_argument("--out", default="reports/bench/zoo_gpu.json")
    p.add_argument("--render", metavar="JSON", help="print the markdown tables of a written report and exit")
    p.add_argument("--reproject", metavar="JSON", help="recompute a report's projections into --out and exit")
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if args.render:
        print(render(read_json(args.render), args.render))
        return 0
    if args.reproject:
        report = read_json(args.reproject)
        paper = load_params(report["sample"]["profile"])
        zoo = zoo_steps(paper, report["sample"]["fuse_max"], report["regimes"]["default"]["pool_size"])
        report["reprojected"] = " ".join(["python", "benchmarks/zoo_gpu.py", *args.argv])
        write_json(args.out, finish(report, paper, zoo))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device here (use --device cpu)")
    run(args)
    print(render(read_json(args.out), args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
