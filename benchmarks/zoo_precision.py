"""Zoo training in bfloat16 on the CPU: how much faster, and whether the models stay as accurate.

The roofline (``benchmarks/zoo_roofline.py``) shows the float32 trainer near what the zoo's convolutions allow
on one core. Lower precision is what could still move it: on CPUs with AMX or AVX-512 BF16, oneDNN runs
bfloat16 convolutions and matrix products several times faster. This trains the same ``--models`` of the
default sample (as ``zoo_throughput.py`` picks them) with the pipeline's ``loop`` trainer twice, one after the
other on one thread: as the pipeline does (float32), and inside
``torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False)``: convolutions and matrix products in
bfloat16; weights, gradients and the optimiser in float32; no weight cache, which would freeze the forward at
the initial weights when one context spans a whole training. Same seeds, same batches, same dropout masks. It
prints and writes the ratio of the times and each model's test accuracy in both, paired. Usage:

    python benchmarks/zoo_precision.py [--models 12] [--out reports/bench/zoo_precision.json]
    python benchmarks/zoo_precision.py --render reports/bench/zoo_precision.json

Not a pipeline option: the zoo trains in float32. Needs ``data/mnist.npz`` (``dvc repro data``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo_roofline import one_thread_report, run_cli  # noqa: E402
from zoo_throughput import pick_specs  # noqa: E402

from kennen.config import load_params, section  # noqa: E402
from kennen.zoo.train import TrainParams, load_train_data, train_model  # noqa: E402

PRECISIONS = ("float32", "bfloat16")


def cpu_flags() -> list[str]:
    """The CPU's bfloat16 features (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return []
    return sorted({f for f in flags if f in ("amx_bf16", "avx512_bf16", "amx_tile")})


def train_in(precision: str, spec, data) -> tuple[float, float, bool]:
    """(seconds, test accuracy, diverged) of one model trained by ``train_model`` in ``precision``."""
    # No weight cache: autocast keeps its bfloat16 copy of each weight until the context exits, and the whole
    # training runs in one context, so a cached copy would freeze the forward at the initial weights.
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False)
    autocast = bf16 if precision == "bfloat16" else contextlib.nullcontext()
    start = time.perf_counter()
    with autocast:
        result = train_model(spec, data)
    return time.perf_counter() - start, result.test_acc, result.diverged


def measure(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    tp = section(TrainParams, load_params(args.params), "train_zoo")
    specs = pick_specs(args.params, args.models, args.epochs)
    data = load_train_data(args.data, tp.pool_size, tp.perm_seed, tp.test_batch)
    rows = []
    for i, spec in enumerate(specs):
        order = PRECISIONS if i % 2 == 0 else PRECISIONS[::-1]  # alternate, so that drift hits both alike
        runs = {p: train_in(p, spec, data) for p in order}
        net = spec.net
        rows.append(
            {
                "model_id": spec.model_id,
                "net": f"{net.act} conv{net.n_conv} fc{net.n_fc} ks{net.ks}{' pool' if net.pool else ''}"
                f"{' drop' if net.drop else ''}",
                "alg": spec.alg,
                "bs": spec.bs,
            }
            | {f"{p}_s": round(runs[p][0], 2) for p in PRECISIONS}
            | {f"{p}_acc": round(runs[p][1], 2) for p in PRECISIONS}
            | {f"{p}_diverged": runs[p][2] for p in PRECISIONS}
        )
        print(rows[-1], flush=True)
    diff = np.array([r["bfloat16_acc"] - r["float32_acc"] for r in rows])
    t32, t16 = sum(r["float32_s"] for r in rows), sum(r["bfloat16_s"] for r in rows)
    summary = {
        "float32_s_per_model": round(t32 / len(rows), 2),
        "bfloat16_s_per_model": round(t16 / len(rows), 2),
        "speedup": round(t32 / t16, 2),
        "float32_mean_acc": round(float(np.mean([r["float32_acc"] for r in rows])), 2),
        "bfloat16_mean_acc": round(float(np.mean([r["bfloat16_acc"] for r in rows])), 2),
        "paired_diff_mean": round(float(diff.mean()), 2),
        "paired_diff_sem": round(float(diff.std(ddof=1) / np.sqrt(len(diff))), 2) if len(diff) > 1 else None,
        "models_within_1_point": int((np.abs(diff) <= 1.0).sum()),
        "largest_abs_diff": round(float(np.abs(diff).max()), 2),
    }
    features = f", bfloat16 features: {', '.join(cpu_flags()) or 'none found'}"
    return one_thread_report(args.params, specs, tp.pool_size, summary, rows, features)


def render(report: dict, path: str) -> str:
    """The markdown table of a report, stamped with its command and machine."""
    s = report["summary"]
    sem = "" if s["paired_diff_sem"] is None else f" ± {s['paired_diff_sem']}"
    return "\n".join(
        [
            "| precision | seconds per model | mean test accuracy | bfloat16 − float32, paired (mean ± s.e.; "
            "models within 1 point; largest) |",
            "|---|---|---|---|",
            f"| float32 (the pipeline) | {s['float32_s_per_model']} | {s['float32_mean_acc']}% | – |",
            f"| bfloat16 autocast | {s['bfloat16_s_per_model']} ({s['speedup']}× faster) | "
            f"{s['bfloat16_mean_acc']}% | {s['paired_diff_mean']:+.2f}{sem}; {s['models_within_1_point']}/"
            f"{report['models']}; {s['largest_abs_diff']} |",
            "",
            f"(`{report['command']}`: {report['models']} models of `{report['profile']}` × {report['epochs']} "
            f"epoch(s) on the {report['pool_size']:,}-image pool; {report['machine']}, torch {report['torch']}, "
            f"{report['date']}; `{path}`.)",
        ]
    )


def main() -> None:
    run_cli(__doc__, measure, render)


if __name__ == "__main__":
    main()
