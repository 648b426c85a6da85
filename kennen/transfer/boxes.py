"""The ``transfer`` params, the foreign boxes' configurations, and training them into ``.pt2`` files.

Each regime draws a *balanced* sample of Table 1: every sampled attribute's values
are tiled to ``n_boxes`` and shuffled independently, so each value appears
equally often (up to rounding) however few boxes there are. Configurations,
torch seeds and the training-image permutation all derive from ``transfer.seed``
with fixed offsets; a regime's stream is keyed by its name, so regimes draw
different configurations and adding a regime changes no other.

Boxes are trained as parallel tasks (``kennen.parallel``); results do not depend
on the worker count or completion order.
"""

from __future__ import annotations

import logging
import re
import statistics
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kennen import data as mnist_data
from kennen.attributes import BY_KEY, SAMPLED, n_par_class, parse_value, size_of_split
from kennen.config import SEED_MAX, bounded, require
from kennen.errors import KennenError
from kennen.io import atomic_path, read_csv, write_csv
from kennen.parallel import run_tasks
from kennen.seeds import Purpose, derive, generator
from kennen.transfer.foreign import EXTRA_ACTS, PARTS, BoxResult, BoxSpec, box_task

log = logging.getLogger("kennen.transfer")

METHODS = ("kennen-o", "kennen-io", "kennen-i")
COLUMNS = (
    "regime", "box", "file", "act", "drop", "pool", "ks", "n_conv", "n_fc", "n_par", "ens", "alg", "bs", "split",
    "size", "n_params", "torch_seed", "epochs", "pool_size", "test_acc", "diverged",
)  # fmt: skip
_INTS = ("box", "n_par", "n_params", "torch_seed", "epochs", "pool_size")


@dataclass(frozen=True)
class RegimeParams:
    """One training regime of the foreign boxes (``transfer.regimes.<name>``)."""

    n_boxes: int = bounded(10_000, 16)
    epochs: int = bounded(1_000, 1)
    pool: int = bounded(60_000, 60000)  # training images the all/half/quarter subsets are cut from

    def check(self, where: str) -> None:
        require(self.n_boxes >= 1, f"{where}.n_boxes", f"must be at least 1, got {self.n_boxes}")
        require(self.epochs >= 1, f"{where}.epochs", f"must be at least 1, got {self.epochs}")
        require(self.pool >= 4, f"{where}.pool", f"must be at least 4 (four quarters), got {self.pool}")


@dataclass(frozen=True)
class TransferParams:
    """``transfer`` section of params.yaml."""

    regimes: dict[str, RegimeParams]
    seed: int = bounded(SEED_MAX, 7)  # the foreign boxes' own seed: configurations, permutation, torch seeds, bootstrap
    methods: tuple[str, ...] = METHODS
    min_acc: float = 0.0  # boxes below this test accuracy are listed but not whitened (the zoo is pruned too)
    extra_act: str = (
        "sampled"  # activation of the extra conv/fc blocks: sampled (paper's text, as the zoo) | relu (official code)
    )

    def check(self, where: str) -> None:
        require(self.seed >= 0, f"{where}.seed", f"must be a non-negative int, got {self.seed}")
        require(bool(self.regimes), f"{where}.regimes", "needs at least one regime")
        for name in self.regimes:
            ok = re.fullmatch(r"[a-z][a-z0-9_]*", name) is not None
            require(ok, f"{where}.regimes.{name}", "names a folder and metric keys: use a-z, 0-9 and _")
        require(bool(self.methods), f"{where}.methods", "needs at least one method")
        for m in self.methods:
            require(m in METHODS, f"{where}.methods", f"expected some of {', '.join(METHODS)}, got {m!r}")
        require(len(set(self.methods)) == len(self.methods), f"{where}.methods", "has duplicates")
        require(0 <= self.min_acc <= 100, f"{where}.min_acc", f"must be a percentage, got {self.min_acc}")
        require(self.extra_act in EXTRA_ACTS, f"{where}.extra_act", f"expected one of {', '.join(EXTRA_ACTS)}, got {self.extra_act!r}")  # fmt: skip


def balanced_configs(n: int, seed: int, regime: str) -> list[dict[str, Any]]:
    """``n`` configurations of the sampled attributes, each attribute's values tiled and shuffled independently."""
    rng = generator(seed, Purpose.TRANSFER_CONFIG, zlib.crc32(regime.encode()))
    columns = {}
    for attr in SAMPLED:
        tiled = [attr.values[i % attr.n_classes] for i in range(n)]
        columns[attr.key] = [tiled[i] for i in rng.permutation(n)]
    return [{k: col[i] for k, col in columns.items()} for i in range(n)]


def box_specs(tp: TransferParams) -> list[BoxSpec]:
    """Every box of every regime, in table order."""
    specs = []
    for name, regime in tp.regimes.items():
        for i, cfg in enumerate(balanced_configs(regime.n_boxes, tp.seed, name)):
            torch_seed = derive(tp.seed, Purpose.TRANSFER_TORCH, zlib.crc32(name.encode()), i)
            specs.append(BoxSpec(name, i, **cfg, torch_seed=torch_seed, epochs=regime.epochs,
                                 pool_size=regime.pool, perm_seed=tp.seed, extra_act=tp.extra_act))  # fmt: skip
    return specs


def box_file(spec: BoxSpec) -> str:
    """Where a box's program lies, relative to the output folder."""
    return f"{spec.regime}/box-{spec.box}.pt2"


def _cost(spec: BoxSpec) -> float:
    """Rough relative training cost, to start the slowest boxes first."""
    per_image = (1.0 if spec.pool else 4.0) * spec.n_conv
    return per_image * spec.epochs * spec.pool_size / PARTS[size_of_split(spec.split)]


def _row(spec: BoxSpec, result: BoxResult) -> dict[str, Any]:
    attrs = {k: getattr(spec, k) for k in ("act", "drop", "pool", "ks", "n_conv", "n_fc")}
    return {
        "regime": spec.regime, "box": spec.box, "file": box_file(spec), **attrs,
        "n_par": n_par_class(result.n_params), "ens": False, "alg": spec.alg, "bs": spec.bs, "split": spec.split,
        "size": size_of_split(spec.split), "n_params": result.n_params, "torch_seed": spec.torch_seed,
        "epochs": spec.epochs, "pool_size": spec.pool_size, "test_acc": round(result.test_acc, 2),
        "diverged": result.diverged,
    }  # fmt: skip


def read_boxes(path: Path) -> list[dict[str, Any]]:
    """The boxes' table written by :func:`make_boxes`, with typed values; a corrupt table is a KennenError."""
    if not path.is_file():
        raise KennenError(f"{path}: boxes table not found (run `dvc repro transfer_boxes`)")
    try:
        rows = []
        for r in read_csv(path):
            row: dict[str, Any] = {k: parse_value(k, r[k]) for k in r if k in BY_KEY}
            row |= {k: int(r[k]) for k in _INTS}
            row |= {"regime": r["regime"], "file": r["file"], "test_acc": float(r["test_acc"])}
            row["diverged"] = r["diverged"] in ("True", "true", "1")
            rows.append(row)
    except (KeyError, ValueError, TypeError) as e:
        raise KennenError(f"{path}: corrupt boxes table ({type(e).__name__}: {e})") from None
    return rows


def make_boxes(tp: TransferParams, data_path: Path, out_dir: Path) -> list[dict[str, Any]]:
    """Train every box, write ``<out_dir>/<regime>/box-<i>.pt2`` and ``<out_dir>/boxes.csv``; return the table rows."""
    n_train = len(mnist_data.load(data_path).train_labels)
    for name, regime in tp.regimes.items():
        if regime.pool > n_train:
            raise KennenError(f"transfer.regimes.{name}.pool: {regime.pool} is more than the {n_train} training images")
    specs = box_specs(tp)
    for stale in out_dir.glob("*/box-*.pt2"):  # a stage rewrites its outputs completely
        stale.unlink()
    jobs = [(s, str(data_path)) for s in sorted(specs, key=_cost, reverse=True)]
    results: dict[tuple[str, int], BoxResult] = {}
    for (spec, _), result in run_tasks(box_task, jobs, len(jobs)):
        with atomic_path(out_dir / box_file(spec)) as tmp:
            tmp.write_bytes(result.program)
        results[spec.regime, spec.box] = result
        log.info("%s box %d: %.2f%% test accuracy, %.0f s", spec.regime, spec.box, result.test_acc, result.seconds)
    rows = [_row(s, results[s.regime, s.box]) for s in specs]
    write_csv(out_dir / "boxes.csv", rows, COLUMNS)
    for name in tp.regimes:
        accs = [r["test_acc"] for r in rows if r["regime"] == name]
        log.info("%s: %d boxes, median test accuracy %.2f%%", name, len(accs), statistics.median(accs))
    return rows
