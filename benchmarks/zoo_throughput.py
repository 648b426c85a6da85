"""Zoo training throughput: the official code's per-model loop against the pipeline's trainers.

Trains the same configurations of the default profile in its own regime (a
spread of ``--models`` rows of ``params.yaml``'s ``sample_zoo`` table, with their
seeds and subsets, ``train_zoo.epochs`` epochs on the first ``train_zoo.pool_size``
images: today 2 epochs on all 60,000) with each method, each in its own process
tree, one after the other, and prints model-epochs per core-hour, the ratio to
the reference measured in the same command, peak memory and the test accuracy of
every method, paired model by model with the reference's. Usage:

    python benchmarks/zoo_throughput.py [--models 24] [--out reports/bench/zoo_throughput.json]
    python benchmarks/zoo_throughput.py --methods reference,loop_nchw,loop,fused   # with the layout before channels-last
    python benchmarks/zoo_throughput.py --render reports/bench/zoo_throughput.json   # the markdown table of the docs
    python benchmarks/zoo_throughput.py --device cuda --methods reference,loop   # on a GPU (benchmarks/zoo_gpu.py)

Needs ``data/mnist.npz`` (``dvc repro data``). The methods:

- ``reference``: the official ``mnist.py`` training loop: torchvision's ``MNIST``
  dataset with per-image PIL transforms (``ToTensor``, ``Normalize``), a
  ``DataLoader`` with a ``SubsetRandomSampler`` and one loader worker, a test pass
  over the 10,000 test images after every epoch, torch's default thread count,
  models one after the other. It builds the same network with the same seeds and
  the same batch order as the pipeline, so the accuracies are comparable model by model.
- ``loop_nchw``: the pipeline's per-model trainer in the default memory layout
  (the trainer before channels-last), one model per task on a process pool of
  one single-threaded worker per core.
- ``loop``: the pipeline's trainer (``train_zoo.trainer: loop``), channels-last.
- ``fused``: the fused trainer (``train_zoo.trainer: fused``): the models grouped
  by structure, one group per task on the same pool.

Every method is given the whole machine (``os.cpu_count()`` cores), so a
core-hour is one core of it for an hour of wall time; the CPU time actually
used (user + system of the whole process tree) is reported next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from kennen import data as mnist_data
from kennen.config import base_seed, load_params, section
from kennen.io import write_json
from kennen.parallel import run_tasks
from kennen.zoo.fused import fusion_groups, train_group_task
from kennen.zoo.sample import SampleParams, sample_zoo
from kennen.zoo.train import (
    TrainParams,
    TrainSpec,
    build_member,
    load_train_data,
    make_optimiser,
    relative_cost,
    subset_indices,
    train_task,
)

METHODS = ("reference", "loop_nchw", "loop", "fused")
LABELS = {
    "reference": "official-style loop (torchvision MNIST + PIL transforms, DataLoader, test every epoch, default threads)",
    "loop_nchw": "pipeline per-model loop, default layout (before channels-last)",
    "loop": "pipeline per-model loop, channels-last (train_zoo.trainer: loop)",
    "fused": "fused trainer, grouped by structure (train_zoo.trainer: fused)",
}
DEFAULT_METHODS = ("reference", "loop", "fused")  # loop_nchw, the layout before channels-last, on request
QUALITY_POINTS = 0.5  # the mean test accuracy of every method must be this close to the reference's


def pick_specs(params_path: str, n_models: int, epochs: int | None) -> list[TrainSpec]:
    """``n_models`` rows spread evenly over the profile's sample table (so its mix of configurations)."""
    params = load_params(params_path)
    rows = sample_zoo(section(SampleParams, params, "sample_zoo"), base_seed(params))
    tp = section(TrainParams, params, "train_zoo")
    picks = np.linspace(0, len(rows) - 1, min(n_models, len(rows))).round().astype(int)
    return [TrainSpec.of(rows[i], epochs or tp.epochs) for i in picks]


# ---- the methods, each run in a child process (``--run``) ----


def _write_idx_root(npz: str, root: Path) -> None:
    """The MNIST files where torchvision's ``MNIST(root)`` looks for them (``root/MNIST/raw``)."""
    m = mnist_data.load(Path(npz))
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for key, name in mnist_data.IDX_FILES.items():
        mnist_data.write_idx(raw / name, getattr(m, key))


def run_reference(specs: list[TrainSpec], npz: str, pool: int, perm_seed: int, device: str) -> list[dict]:
    """The official code's loop (``src/mnist_nets/mnist.py::train``) for each model in turn."""
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, SubsetRandomSampler
    from torchvision import datasets, transforms

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write_idx_root(npz, root)
        tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
        train_set = datasets.MNIST(str(root), train=True, download=False, transform=tf)
        test_set = datasets.MNIST(str(root), train=False, download=False, transform=tf)
        perm = np.random.RandomState(perm_seed).permutation(len(train_set))[:pool]
        kwargs = {"num_workers": 1, "pin_memory": device == "cuda"}
        for spec in specs:
            start = time.perf_counter()
            net, shuffle = build_member(spec, device)  # same init, dropout generator and batch order as the pipeline
            opt = make_optimiser(spec.alg, net.parameters())
            sampler = SubsetRandomSampler(subset_indices(perm, spec.split).tolist(), generator=shuffle)
            train_loader = DataLoader(train_set, sampler=sampler, batch_size=spec.bs, **kwargs)
            test_loader = DataLoader(test_set, batch_size=spec.bs, shuffle=True, **kwargs)
            acc = 0.0
            for _ in range(spec.epochs):
                net.train()
                for x, y in train_loader:
                    x, y = x.to(device), y.to(device)
                    opt.zero_grad()
                    loss = F.nll_loss(net(x), y)
                    loss.backward()
                    opt.step()
                net.eval()
                correct = 0
                with torch.no_grad():
                    for x, y in test_loader:
                        correct += int((net(x.to(device)).argmax(1) == y.to(device)).sum())
                acc = 100.0 * correct / len(test_set)
            out.append({"model_id": spec.model_id, "test_acc": acc, "seconds": time.perf_counter() - start})
    return out


def run_pipeline(method: str, specs: list[TrainSpec], npz: str, pool: int, perm_seed: int, device: str) -> list[dict]:
    """The pipeline's trainers on its executor (``KENNEN_EXECUTOR``, default: a process pool, one worker per core)."""
    import functools

    data = {"data_path": npz, "pool_size": pool, "perm_seed": perm_seed, "test_batch": 256, "device": device}
    max_workers = 1 if device == "cuda" else None
    # As the train_zoo stage does: the costliest tasks first, so that the workers finish together.
    if method == "fused":
        tasks = sorted(fusion_groups(specs, 64), key=lambda g: sum(map(relative_cost, g)), reverse=True)
        job = functools.partial(train_group_task, **data)
    else:
        tasks = sorted(((s,) for s in specs), key=lambda g: relative_cost(g[0]), reverse=True)
        job = functools.partial(_one, channels_last=method == "loop", **data)
    results = [r for _, group in run_tasks(job, tasks, len(tasks), max_workers) for r in group]
    return [{"model_id": r.model_id, "test_acc": r.test_acc, "seconds": r.seconds} for r in results]


def _one(specs: tuple[TrainSpec], channels_last: bool, **data) -> list:
    if channels_last:
        return [train_task(specs[0], **data)]
    from kennen.zoo.train import train_model

    loaded = load_train_data(
        data["data_path"], data["pool_size"], data["perm_seed"], data["test_batch"], data["device"]
    )
    return [train_model(specs[0], loaded, data["device"], channels_last=False)]


def child(args: argparse.Namespace) -> None:
    specs = pick_specs(args.params, args.models, args.epochs)
    tp = section(TrainParams, load_params(args.params), "train_zoo")
    pool = args.pool or tp.pool_size
    start = time.perf_counter()
    if args.run == "reference":
        rows = run_reference(specs, args.data, pool, tp.perm_seed, args.device)
    else:
        rows = run_pipeline(args.run, specs, str(Path(args.data).resolve()), pool, tp.perm_seed, args.device)
    wall = time.perf_counter() - start
    gpu_peak = torch.cuda.max_memory_allocated() if args.device == "cuda" else None
    Path(args.result).write_text(json.dumps({"wall_s": wall, "models": rows, "gpu_peak_bytes": gpu_peak}))


# ---- the driver ----


class TreeMemory:
    """Peak resident memory of a process and all its descendants, sampled every 50 ms (needs psutil)."""

    def __init__(self, pid: int):
        self.peak = 0
        self.available = True
        try:
            import psutil
        except ImportError:
            self.available = False
            return
        self._proc = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self._proc, *self._proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)

    def stop(self) -> int | None:
        if not self.available:
            return None
        self._stop.set()
        self._thread.join()
        return self.peak


def measure(method: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--run", method, "--result", str(result), "--params", args.params,
               "--data", args.data, "--models", str(args.models), "--device", args.device]  # fmt: skip
        if args.epochs:
            cmd += ["--epochs", str(args.epochs)]
        if args.pool:
            cmd += ["--pool", str(args.pool)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.Popen(cmd)
        memory = TreeMemory(proc.pid)
        if proc.wait() != 0:
            raise SystemExit(f"{method}: the child process failed (exit {proc.returncode})")
        peak = memory.stop()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = json.loads(result.read_text())
    out["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out["peak_rss_bytes"] = peak
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml", help="the profile whose configurations are trained")
    p.add_argument("--data", default="data/mnist.npz")
    p.add_argument("--models", type=int, default=24, help="rows of the profile's sample table, spread evenly")
    p.add_argument("--epochs", type=int, default=0, help="default: the profile's train_zoo.epochs")
    p.add_argument("--pool", type=int, default=0, help="default: the profile's train_zoo.pool_size")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"a subset of {','.join(METHODS)}")
    p.add_argument("--out", default="reports/bench/zoo_throughput.json")
    p.add_argument("--run", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--render", metavar="JSON", help="print the markdown table of a written report and exit")
    args = p.parse_args()
    if args.render:
        return print(render(json.loads(Path(args.render).read_text()), args.render))
    if args.run:
        return child(args)
    methods = args.methods.split(",")
    if methods[0] != "reference" or not set(methods) <= set(METHODS):
        raise SystemExit(f"--methods: a comma-separated subset of {','.join(METHODS)} starting with reference")
    specs = pick_specs(args.params, args.models, args.epochs)
    tp = section(TrainParams, load_params(args.params), "train_zoo")
    epochs, pool = specs[0].epochs, args.pool or tp.pool_size
    cores = os.cpu_count() or 1
    groups = fusion_groups(specs, 64)
    print(
        f"{len(specs)} models of {args.params} x {epochs} epoch(s) on a {pool}-image pool, {args.device}, {cores} cores;"
        f" the fused trainer forms {len(groups)} groups (largest {max(map(len, groups))})",
        flush=True,
    )
    rows = []
    for method in methods:
        r = measure(method, args)
        model_epochs = len(specs) * epochs
        row = {
            "method": method,
            "what": LABELS[method],
            "wall_s": round(r["wall_s"], 1),
            "cpu_s": round(r["cpu_s"], 1),
            "model_epochs_per_core_hour": round(model_epochs / (r["wall_s"] * cores / 3600), 1),
            "model_epochs_per_cpu_hour": round(model_epochs / (r["cpu_s"] / 3600), 1) if r["cpu_s"] else None,
            "peak_rss_mib": None if r["peak_rss_bytes"] is None else round(r["peak_rss_bytes"] / 2**20),
            "gpu_peak_mib": None if r["gpu_peak_bytes"] is None else round(r["gpu_peak_bytes"] / 2**20),
            "mean_test_acc": round(float(np.mean([m["test_acc"] for m in r["models"]])), 2),
            "test_acc": {m["model_id"]: m["test_acc"] for m in r["models"]},
        }
        if device_name := (torch.cuda.get_device_name() if args.device == "cuda" else None):
            row["device"] = device_name
        rows.append(row)
        base = rows[0]
        row["ratio_to_reference"] = round(row["model_epochs_per_core_hour"] / base["model_epochs_per_core_hour"], 2)
        row["acc_gap_to_reference"] = round(row["mean_test_acc"] - base["mean_test_acc"], 2)
        # Model by model (same seeds, init, batch order and dropout masks): rounding is the only difference, and
        # one epoch of SGD at lr 0.1 amplifies it, so report the spread of the paired differences too.
        diff = np.array([row["test_acc"][i] - base["test_acc"][i] for i in base["test_acc"]])
        row["paired_diff"] = {
            "mean": round(float(diff.mean()), 2),
            "sem": round(float(diff.std(ddof=1) / np.sqrt(len(diff))), 2) if len(diff) > 1 else None,
            "models_within_1_point": int((np.abs(diff) <= 1).sum()),
            "max_abs": round(float(np.abs(diff).max()), 2),
        }
        print(
            f"{method:10s} {row['wall_s']:8.1f} s wall {row['cpu_s']:8.1f} s CPU"
            f"  {row['model_epochs_per_core_hour']:8.1f} model-epochs/core-hour  x{row['ratio_to_reference']:<5}"
            f"  peak {row['peak_rss_mib']} MiB  mean test acc {row['mean_test_acc']:.2f}%"
            f" ({row['acc_gap_to_reference']:+.2f}; paired {row['paired_diff']['mean']:+.2f}"
            f" +- {row['paired_diff']['sem']}, {row['paired_diff']['models_within_1_point']}/{len(diff)} models"
            " within 1 point)",
            flush=True,
        )
    quality_ok = all(abs(r["acc_gap_to_reference"]) <= QUALITY_POINTS for r in rows)
    print(f"quality: every method within {QUALITY_POINTS} points of the reference's mean test accuracy: {quality_ok}")
    write_json(
        args.out,
        {
            "machine": f"{platform.processor() or platform.machine()}, {cores} cores",
            "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(["python", "benchmarks/zoo_throughput.py", *sys.argv[1:]]),
            "profile": args.params,
            "models": len(specs),
            "epochs": epochs,
            "pool_size": pool,
            "regime": "the profile's train_zoo" if not (args.epochs or args.pool) else "overridden on the command line",
            "device": args.device,
            "fused_groups": [len(g) for g in groups],
            "quality_within_points": QUALITY_POINTS,
            "quality_ok": quality_ok,
            "methods": rows,
        },
    )


def render(report: dict, path: str) -> str:
    """The markdown table of a report, stamped with its command, machine and regime."""
    lines = [
        "| method | wall | CPU time | model-epochs / core-hour | ratio to reference | peak memory | mean test acc "
        "| paired difference to the reference (mean ± s.e.; models within 1 point; largest) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["methods"]:
        d = r["paired_diff"]
        pair = (
            "–"
            if r["method"] == "reference"
            else f"{d['mean']:+.2f} ± {d['sem']}; {d['models_within_1_point']}/{report['models']}; {d['max_abs']}"
        )
        mem = "–" if r["peak_rss_mib"] is None else f"{r['peak_rss_mib']:,} MiB"
        lines.append(
            f"| `{r['method']}` | {r['wall_s']:,.1f} s | {r['cpu_s']:,.1f} s | {r['model_epochs_per_core_hour']:,.1f} "
            f"| {r['ratio_to_reference']:.2f}× | {mem} | {r['mean_test_acc']:.2f}% | {pair} |"
        )
    gpu = next((f", {r['device']}" for r in report["methods"] if "device" in r), "")
    lines.append(
        f"\n(`{report['command']}`: {report['models']} models of `{report['profile']}` x {report['epochs']} epoch(s) on the "
        f"{report['pool_size']:,}-image pool, {report['device']}{gpu}; {report['machine']}, torch {report['torch']}, {report.get('date', 'undated')}; `{path}`.)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
