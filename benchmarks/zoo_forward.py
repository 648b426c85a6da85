"""The zoo forward of kennen-i/io's query steps: a plain per-network loop against ``ZooForward``'s two strategies.

All three compute the same thing: log-probabilities of many frozen zoo networks
on a batch of query images, and the gradient of a loss with respect to those
images. Needs the default zoo (`dvc repro queries` or `dvc pull`). Usage:

    python benchmarks/zoo_forward.py [--repeats 3] [--out reports/bench/zoo_forward.json]

Prints milliseconds per network per step for (a) the plain loop (each ``MnistNet``
as built, frozen), (b) ``ZooForward(strategy="loop")`` (channels-last) and (c)
``ZooForward(strategy="grouped")`` (horizontal fusion by structure), and the
speedups of (b) and (c) over (a), all measured in the same process, single-threaded.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time
from pathlib import Path

import torch

from kennen import data as mnist_data
from kennen.io import write_json
from kennen.queries import read_boxes
from kennen.zoo.forward import ZooForward
from kennen.zoo.net import MnistNet, NetConfig
from kennen.zoo.prune import read_kept
from kennen.zoo.store import read_table, shard_name, state_dicts

CASES = (  # (name, query images, networks per step)
    ("kennen-i step: 12 images, 25 networks", 12, 25),
    ("kennen-io step: 100 images, 25 networks", 100, 25),
    ("kennen-io features: 100 images, all networks", 100, None),
)


def load_nets(root: Path) -> list[MnistNet]:
    models = {m["model_id"]: m for m in read_table(root / "data/zoo/models.csv")}
    kept = read_kept(root / "data/zoo/kept.json")
    states: dict[int, dict] = {}
    for shard in sorted({models[i]["shard"] for i in kept}):
        states.update(state_dicts(root / "data/zoo/shards" / f"{shard_name(shard)}.safetensors"))
    nets = []
    for i in sorted(kept):
        net = MnistNet(NetConfig.of(models[i]))
        net.load_state_dict(states[i])
        nets.append(net.eval().requires_grad_(False))
    return nets


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="reports/bench/zoo_forward.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    root = Path(".")
    nets = load_nets(root)
    loop_cl = ZooForward(copy.deepcopy(nets), "loop")
    grouped = ZooForward(copy.deepcopy(nets), "grouped")
    images = mnist_data.load(root / "data/mnist.npz").test_images[:100]
    x_all = torch.from_numpy(mnist_data.normalise(images))
    gen = torch.Generator().manual_seed(0)
    rows = []
    print(
        f"{len(nets)} networks in {len(grouped.groups)} structure groups; {len(read_boxes(root / 'data/queries/boxes.csv'))} boxes"
    )
    for name, n_q, n_nets in CASES:
        sel = torch.randperm(len(nets), generator=gen)[: n_nets or len(nets)]
        w = torch.randn(len(sel), n_q, 10, generator=gen)

        def plain(sel=sel, w=w, n_q=n_q):
            x = x_all[:n_q].clone().requires_grad_(True)
            (torch.stack([nets[i](x) for i in sel.tolist()]) * w).sum().backward()

        def zoo_forward(zoo, sel=sel, w=w, n_q=n_q):
            x = x_all[:n_q].clone().requires_grad_(True)
            (zoo(x, sel) * w).sum().backward()

        t_plain = timed(plain, args.repeats)
        t_loop = timed(lambda: zoo_forward(loop_cl), args.repeats)
        t_grouped = timed(lambda: zoo_forward(grouped), args.repeats)
        n = len(sel)

        def per(t: float, n: int = n) -> float:
            return round(1000 * t / n, 2)

        row = {
            "case": name,
            "networks": len(sel),
            "plain_loop_ms_per_network": per(t_plain),
            "channels_last_loop_ms_per_network": per(t_loop),
            "grouped_ms_per_network": per(t_grouped),
            "speedup_channels_last_loop": round(t_plain / t_loop, 2),
            "speedup_grouped": round(t_plain / t_grouped, 2),
        }
        rows.append(row)
        print(
            f"{name:46s} plain {per(t_plain):6.2f}  channels-last loop {per(t_loop):6.2f} (x{t_plain / t_loop:.2f})"
            f"  grouped {per(t_grouped):6.2f} (x{t_plain / t_grouped:.2f})  ms/network"
        )
    write_json(
        args.out,
        {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, single-threaded run",
            "torch": torch.__version__,
            "command": "python benchmarks/zoo_forward.py",
            "cases": rows,
        },
    )


if __name__ == "__main__":
    main()
