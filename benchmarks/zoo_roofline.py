"""Zoo training against the machine's limit: the work of a model in FLOPs, and how fast one core can do it.

For a spread of ``--models`` rows of the profile's sample (as ``zoo_throughput.py`` picks them), in the
profile's own regime, this measures in one command, on one thread (as a zoo worker trains):

- **the work**: floating-point operations of one training step of each model at its batch size, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products, forward and backward;
  activations, pooling, the loss and the optimiser are left out: they are memory-bound and small), times the
  model's steps;
- **the trainer**: the pipeline's ``loop`` trainer (``kennen.zoo.train.train_model``) on each model, whole;
- **the bare step**: the same model's forward and backward on one fixed batch, repeated, with no data
  indexing, optimiser step or test pass: what the kernels alone cost;
- **the core's peak**: single-thread float32 ``torch.mm`` on 1024 x 1024 matrices (the best case of the same
  BLAS/oneDNN stack), and a convolution of the zoo's most common shape (20 -> 20 channels, 5 x 5, 24 x 24,
  batch 64) forward and backward, as the best case of the zoo's own layers.

It prints and writes, per model and for the sample: achieved GFLOP/s of the trainer and of the bare step,
their fraction of the matrix-product peak, the trainer's overhead over the bare step, and what the trainer
would gain at most if every step ran at the peak. Usage:

    python benchmarks/zoo_roofline.py [--models 12] [--out reports/bench/zoo_roofline.json]
    python benchmarks/zoo_roofline.py --render reports/bench/zoo_roofline.json   # the docs' table

Needs ``data/mnist.npz`` (``dvc repro data``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo_throughput import pick_specs  # noqa: E402

from kennen.config import load_params, section  # noqa: E402
from kennen.io import write_json  # noqa: E402
from kennen.zoo.train import TrainParams, TrainSpec, build_member, load_train_data, train_model  # noqa: E402


def step_flops(spec: TrainSpec) -> int:
    """FLOPs of one training step (forward and backward) of ``spec``'s network on a batch of ``spec.bs``."""
    net, _ = build_member(spec, "cpu")
    net.train()
    x = torch.randn(spec.bs, 1, 28, 28)
    y = torch.randint(0, 10, (spec.bs,))
    with FlopCounterMode(display=False) as counter:
        nn.functional.nll_loss(net(x), y).backward()
    return int(counter.get_total_flops())


def bare_step_seconds(spec: TrainSpec, x: torch.Tensor, y: torch.Tensor, min_seconds: float) -> float:
    """Seconds of one forward and backward of ``spec``'s network on the batch (x, y), channels-last, repeated."""
    net, _ = build_member(spec, "cpu")
    net = net.to(memory_format=torch.channels_last).train()
    x = x.contiguous(memory_format=torch.channels_last)
    for _ in range(3):  # warm-up: oneDNN picks and caches its kernels
        nn.functional.nll_loss(net(x), y).backward()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        net.zero_grad(set_to_none=True)
        nn.functional.nll_loss(net(x), y).backward()
        n += 1
    return (time.perf_counter() - start) / n


def matmul_peak(size: int = 1024, min_seconds: float = 2.0) -> float:
    """Single-thread float32 GFLOP/s of ``torch.mm`` on square matrices of ``size``."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        torch.mm(a, b)
        n += 1
    return 2.0 * size**3 * n / (time.perf_counter() - start) / 1e9


def conv_peak(min_seconds: float = 2.0) -> float:
    """Single-thread GFLOP/s of the zoo's commonest extra conv layer (20 -> 20, 5 x 5, same padding, 24 x 24,
    batch 64), forward and backward, channels-last."""
    conv = nn.Conv2d(20, 20, 5, padding=2).to(memory_format=torch.channels_last)
    x = torch.randn(64, 20, 24, 24).contiguous(memory_format=torch.channels_last).requires_grad_()
    with FlopCounterMode(display=False) as counter:
        conv(x).sum().backward()
    flops = counter.get_total_flops()
    for _ in range(3):
        conv(x).sum().backward()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        conv(x).sum().backward()
        n += 1
    return flops * n / (time.perf_counter() - start) / 1e9


def measure(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    params = load_params(args.params)
    tp = section(TrainParams, params, "train_zoo")
    specs = pick_specs(args.params, args.models, args.epochs)
    data = load_train_data(args.data, tp.pool_size, tp.perm_seed, tp.test_batch)
    peak_mm, peak_conv = matmul_peak(min_seconds=args.peak_seconds), conv_peak(min_seconds=args.peak_seconds)
    rows = []
    for spec in specs:
        n_images = len(data.subsets[spec.split])
        steps = spec.epochs * -(-n_images // spec.bs)
        flops = step_flops(spec)
        start = time.perf_counter()
        result = train_model(spec, data)
        trainer_s = time.perf_counter() - start
        batch = data.subsets[spec.split][: spec.bs]
        bare_s = bare_step_seconds(spec, data.train_x[batch], data.train_y[batch], args.bare_seconds)
        work = flops * steps
        rows.append(
            {
                "model_id": spec.model_id,
                "net": f"{spec.net.act} conv{spec.net.n_conv} fc{spec.net.n_fc} ks{spec.net.ks}"
                f"{' pool' if spec.net.pool else ''}{' drop' if spec.net.drop else ''}",
                "bs": spec.bs,
                "steps": steps,
                "gflop": round(work / 1e9, 2),
                "trainer_s": round(trainer_s, 2),
                "bare_s": round(bare_s * steps, 2),
                "trainer_gflops": round(work / trainer_s / 1e9, 2),
                "bare_gflops": round(flops / bare_s / 1e9, 2),
                "test_acc": round(result.test_acc, 2),
            }
        )
        print(rows[-1], flush=True)
    total = sum(r["gflop"] for r in rows)
    trainer = sum(r["trainer_s"] for r in rows)
    bare = sum(r["bare_s"] for r in rows)
    summary = {
        "gflop_per_model": round(total / len(rows), 1),
        "trainer_s_per_model": round(trainer / len(rows), 2),
        "bare_s_per_model": round(bare / len(rows), 2),
        "trainer_gflops": round(total / trainer, 2),
        "bare_gflops": round(total / bare, 2),
        "matmul_peak_gflops": round(peak_mm, 1),
        "conv_peak_gflops": round(peak_conv, 1),
        "trainer_of_matmul_peak": round(total / trainer / peak_mm, 3),
        "bare_of_matmul_peak": round(total / bare / peak_mm, 3),
        "trainer_overhead": round(1 - bare / trainer, 3),  # share of the trainer's time outside the bare steps
        "max_gain_at_conv_peak": round(trainer / (total / peak_conv), 2),
        "max_gain_at_matmul_peak": round(trainer / (total / peak_mm), 2),
    }
    return one_thread_report(args.params, specs, tp.pool_size, summary, rows)


def one_thread_report(
    profile: str, specs: list[TrainSpec], pool_size: int, summary: dict, rows: list[dict], machine: str = ""
) -> dict:
    """A one-thread benchmark's report: the stamp (machine, torch, date, command, regime), summary and rows."""
    return {
        "machine": f"{platform.processor() or platform.machine()}, 1 thread{machine}",
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python", *sys.argv]),
        "profile": profile,
        "models": len(rows),
        "epochs": specs[0].epochs,
        "pool_size": pool_size,
        "summary": summary,
        "per_model": rows,
    }


def render(report: dict, path: str) -> str:
    """The markdown tables of a report, stamped with its command and machine."""
    s = report["summary"]
    lines = [
        "| | per model | GFLOP/s (1 thread) | of the matrix-product peak |",
        "|---|---|---|---|",
        f"| work (convolutions and matrix products, forward and backward) | {s['gflop_per_model']:,} GFLOP | – | – |",
        f"| `loop` trainer, whole model | {s['trainer_s_per_model']} s | {s['trainer_gflops']} | "
        f"{100 * s['trainer_of_matmul_peak']:.0f}% |",
        f"| the same steps' forward and backward alone | {s['bare_s_per_model']} s | {s['bare_gflops']} | "
        f"{100 * s['bare_of_matmul_peak']:.0f}% |",
        f"| zoo-shaped convolution (20→20, 5×5, 24×24, batch 64) | – | {s['conv_peak_gflops']} | "
        f"{100 * s['conv_peak_gflops'] / s['matmul_peak_gflops']:.0f}% |",
        f"| float32 `torch.mm`, 1024² | – | {s['matmul_peak_gflops']} | 100% |",
        "",
        f"(`{report['command']}`: {report['models']} models of `{report['profile']}` × {report['epochs']} epoch(s) on "
        f"the {report['pool_size']:,}-image pool; {report['machine']}, torch {report['torch']}, {report['date']}; "
        f"`{path}`.)",
    ]
    return "\n".join(lines)


def run_cli(doc: str, measure, render, add_arguments=None) -> None:
    """The command line of a one-thread zoo benchmark: measure and write a report, or ``--render`` one."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--models", type=int, default=12)
    p.add_argument("--epochs", type=int, default=None, help="default: the profile's train_zoo.epochs")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--data", default="data/mnist.npz")
    if add_arguments is not None:
        add_arguments(p)
    p.add_argument("--out", default=None)
    p.add_argument("--render", default=None, help="print the tables of a report file and exit")
    args = p.parse_args()
    if args.render:
        print(render(json.loads(Path(args.render).read_text()), args.render))
        return
    report = measure(args)
    print(json.dumps(report["summary"], indent=1))
    if args.out:
        write_json(Path(args.out), report)
        print(render(report, args.out))


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bare-seconds", type=float, default=1.0, help="how long each model's bare step is repeated")
    p.add_argument("--peak-seconds", type=float, default=2.0, help="how long each peak measurement runs")


def main() -> None:
    run_cli(__doc__, measure, render, _arguments)


if __name__ == "__main__":
    main()
