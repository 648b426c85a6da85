"""Family-aware adversarial examples (paper §7, Tables 4 and 5): why knowing the family matters.

The paper's attack (GAMAN) is not public. We use the standard untargeted L∞
projected gradient descent of Madry et al. (2018), which is iterative FGSM
(Kurakin et al., 2017) with a random start: on an *ensemble* of generating
models (the mean of their cross-entropies, as in Liu et al., 2017),

    x <- clip_[0,1]( clip_[x0 - eps, x0 + eps]( x + step * sign(grad) ) ),

in pixel space, so every adversarial image is a valid image within ``eps`` of
its original in every pixel.

The experiments, as the paper describes them:

- Table 4, generating family x target family: within a family, leave-one-out
  (the images are made on the other members and tested on the held-out one);
  across families, the generating family minus one member (drawn once per
  family), so the generating sets have the same size; ``ens``: one model of
  every family, never the target. A ``clean`` row for reference.
- Table 5, attack scenarios for each target: ``white_box`` (made on the target
  itself), ``true_family`` (its family minus itself), ``predicted_family`` (the
  family the probe predicts for it, from the probe trained without the target's
  architecture; the images of that family's Table 4 row), ``all_families``
  (``ens``).

Metric: misclassification rate, 100 - top-1 accuracy against the true labels (the
paper's). Next to it, ``fooled``: of the images the target gets right when clean, the
share it gets wrong after the attack, which separates the attack from the target's own
errors (the offline surrogates are far from perfect).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from kennen import paper
from kennen.config import require
from kennen.seeds import Purpose, StableRng, torch_generator

SCENARIOS = ("white_box", "true_family", "predicted_family", "all_families")
# The paper's Tables 5 and 4 live in kennen/paper.py; these names are kept for stages/imagenet_attack.py.
PAPER_TABLE5, PAPER_TABLE4 = paper.TABLE5, paper.TABLE4


@dataclass(frozen=True)
class AttackParams:
    """``imagenet_attack`` section of params.yaml."""

    eps: float = 0.1  # L∞ budget in pixel units (images in [0, 1])
    step: float = 0.025  # per iteration
    steps: int = 10
    random_start: bool = True
    images: int = 100  # attacked images (the paper: 100 ImageNet validation images)
    probe_queries: int = 100  # queries the probe reads to predict each target's family
    labels: str = ""  # pretrained mode: CSV file,label of the attacked images (ImageNet class indices)
    image_dir: str = ""  # pretrained mode: their folder; empty = imagenet_probe.pretrained.image_dir

    def check(self, where: str) -> None:
        require(0 < self.eps <= 1, f"{where}.eps", f"must be within (0, 1], got {self.eps}")
        require(0 < self.step <= 1, f"{where}.step", f"must be within (0, 1], got {self.step}")
        require(self.steps >= 1, f"{where}.steps", f"must be at least 1, got {self.steps}")
        require(self.images >= 1, f"{where}.images", f"must be at least 1, got {self.images}")
        require(self.probe_queries >= 1, f"{where}.probe_queries", f"must be at least 1, got {self.probe_queries}")


def pgd(
    models: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    step: float,
    steps: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Untargeted L∞ PGD on the mean cross-entropy of ``models`` (pixel-space images -> logits).

    Args:
        x: clean images in [0, 1]; y: their true labels.
        generator: for the random start; None starts at ``x`` (iterative FGSM).
    Returns:
        Adversarial images, within ``eps`` of ``x`` in every pixel and within [0, 1].
    """
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    adv = x.clone()
    if generator is not None:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        adv = (x + (2 * noise - 1) * eps).clamp(lo, hi)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = torch.stack([nn.functional.cross_entropy(m(adv), y) for m in models]).mean()
        (grad,) = torch.autograd.grad(loss, adv)
        adv = torch.maximum(torch.minimum(adv.detach() + step * grad.sign(), hi), lo)
    return adv.detach()


@torch.inference_mode()
def wrong(
    model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, batch: int = 50
) -> np.ndarray:
    """Per image, whether ``model``'s top-1 label differs from ``y`` (bool [N])."""
    return torch.cat([model(x[i : i + batch]).argmax(1) != y[i : i + batch] for i in range(0, len(x), batch)]).numpy()


def misclassification(
    model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, batch: int = 50
) -> float:
    """100 - top-1 accuracy (%) of ``model`` on (x, y)."""
    return 100.0 * float(wrong(model, x, y, batch).mean())


def fooled(adv_wrong: np.ndarray, clean_wrong: np.ndarray) -> float:
    """Of the images a target classifies right when clean, the share (%) it gets wrong after the attack."""
    right = ~clean_wrong
    return 100.0 * float(adv_wrong[right].mean()) if right.any() else float("nan")


@dataclass(frozen=True)
class Job:
    """One set of adversarial images: made on ``generators``, tested on ``targets`` (model names)."""

    generators: tuple[str, ...]
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """Which generating set every (table entry, target) uses; ``jobs`` lists each distinct set once."""

    families: dict[str, tuple[str, ...]]
    left_out: dict[str, str]  # family -> the member its across-family row leaves out
    ens: dict[str, tuple[str, ...]]  # target -> its one-model-per-family ensemble (never the target)
    predicted: dict[str, str]  # target -> the family the probe predicts for it

    def family_of(self, name: str) -> str:
        return next(f for f, ms in self.families.items() if name in ms)

    def generators(self, row: str, target: str) -> tuple[str, ...]:
        """Table 4's generating set for ``row`` (a family or ``ens``) against ``target``."""
        if row == "ens":
            return self.ens[target]
        members = self.families[row]
        if row == self.family_of(target):
            return tuple(m for m in members if m != target)  # leave-one-out
        return tuple(m for m in members if m != self.left_out[row])

    def scenario(self, name: str, target: str) -> tuple[str, ...]:
        """Table 5's generating set for scenario ``name`` against ``target``."""
        if name == "white_box":
            return (target,)
        if name == "true_family":
            return self.generators(self.family_of(target), target)
        if name == "predicted_family":
            return self.generators(self.predicted[target], target)
        return self.ens[target]

    @property
    def jobs(self) -> list[Job]:
        targets: dict[tuple[str, ...], set[str]] = {}
        for t in itertools.chain.from_iterable(self.families.values()):
            for row in [*self.families, "ens"]:
                targets.setdefault(self.generators(row, t), set()).add(t)
            for s in SCENARIOS:
                targets.setdefault(self.scenario(s, t), set()).add(t)
        order = [m for ms in self.families.values() for m in ms]
        return [Job(g, tuple(sorted(ts, key=order.index))) for g, ts in targets.items()]


def make_plan(families: dict[str, Sequence[str]], predicted: dict[str, str], seed: int) -> Plan:
    """The paper's generating sets, drawn from ``seed``: who each across-family row leaves out, each ensemble."""
    fams = {f: tuple(ms) for f, ms in families.items()}
    for f, ms in fams.items():
        require(len(ms) >= 2, f"imagenet_probe.families.{f}", "needs at least two models for leave-one-out")
    rng = StableRng(seed, Purpose.ATTACK)
    left_out = {f: ms[rng.below(len(ms))] for f, ms in fams.items()}
    # One fixed order per family; a target's ensemble takes each family's first member that is not the target.
    orders = {f: [ms[i] for i in _permutation(rng, len(ms))] for f, ms in fams.items()}
    ens = {
        t: tuple(next(m for m in orders[f] if m != t) for f in fams)
        for t in itertools.chain.from_iterable(fams.values())
    }
    missing = sorted(set(ens) - set(predicted))
    require(not missing, "imagenet_attack", f"no probe prediction for {', '.join(missing)}")
    return Plan(fams, left_out, ens, dict(predicted))


def _permutation(rng: StableRng, n: int) -> list[int]:
    return list(itertools.islice(rng.permutation_prefix(n), n))


def tables(plan: Plan, mc: dict[tuple[tuple[str, ...], str], float], clean: dict[str, float]) -> dict[str, dict]:
    """Table 4 (row -> target family -> mean misclassification over the family's targets) and Table 5.

    ``mc[(generators, target)]`` is the misclassification of ``target`` on images made on ``generators``;
    ``clean[target]`` on the clean images.
    """
    fams = list(plan.families)
    table4: dict[str, dict[str, float]] = {"clean": {}}
    for t_fam in fams:
        table4["clean"][t_fam] = _mean(clean[t] for t in plan.families[t_fam])
    for row in [*fams, "ens"]:
        table4[row] = {t_fam: _mean(mc[(plan.generators(row, t), t)] for t in plan.families[t_fam]) for t_fam in fams}
    targets = [t for ms in plan.families.values() for t in ms]
    table5 = {s: _mean(mc[(plan.scenario(s, t), t)] for t in targets) for s in SCENARIOS}
    per_target = {
        t: {"family": plan.family_of(t), "predicted": plan.predicted[t], "clean": clean[t],
            **{s: mc[(plan.scenario(s, t), t)] for s in SCENARIOS}}
        for t in targets
    }  # fmt: skip
    return {"table4": table4, "table5": table5, "per_target": per_target}


def _mean(values) -> float | None:
    """The mean over the defined values (rounded); None when none is defined (JSON null)."""
    vs = [v for v in values if not np.isnan(v)]
    return round(float(np.mean(vs)), 2) if vs else None


def run_job(
    job: Job, index: int, source, x: torch.Tensor, y: torch.Tensor, params: AttackParams, seed: int
) -> dict[str, np.ndarray]:
    """Executor entry point: the job's images made on its generators; per target, which images it gets wrong."""
    torch.set_num_threads(1)
    gen = torch_generator(seed, Purpose.ATTACK, index)
    models = [source.load(name) for name in job.generators]
    adv = pgd(models, x, y, params.eps, params.step, params.steps, gen if params.random_start else None)
    return {t: wrong(source.load(t), adv, y) for t in job.targets}


def run_clean(name: str, source, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Executor entry point: which clean images ``name`` gets wrong."""
    torch.set_num_threads(1)
    return wrong(source.load(name), x, y)
