"""Output defences: what a deployed classifier may return instead of its probabilities.

Each defence is a small pure function of a box's probabilities ``p`` [..., 10]
(and, for the randomised ones, a NumPy generator) that returns what the
defended API answers, again as 10 non-negative numbers per query; withheld
entries are 0. A setting is written ``NAME`` or ``NAME:VALUE``, the same in
``params.yaml: defences.settings`` and in ``kennen whiten --defence``:

- ``none``: the probabilities as they are.
- ``round:d``: probabilities rounded to d decimals (Tramèr et al. 2016, "Stealing
  Machine Learning Models via Prediction APIs", §8), not renormalised, d in 1..6.
- ``topk:k``: the k largest probabilities only, the rest withheld (0), k in 1..10;
  ties go to the lower class index.
- ``label``: the top-1 label only (one-hot).
- ``noise:sigma``: additive Gaussian noise N(0, sigma^2) on every probability,
  negatives clipped to 0, renormalised (ART's ``GaussianNoise`` postprocessor);
  sigma in (0, 1]. Randomised.
- ``temperature:T``: softmax(log p / T), T in [0.01, 1000]: T > 1 flattens, T < 1
  sharpens; the top-1 label never changes.
- ``reverse_sigmoid:beta``: Lee et al. 2019, "Defending Against NN Model Stealing
  Attacks Using Deceptive Perturbations" (IEEE S&P Workshops; arXiv:1806.00054):
  ``alpha * (p - beta * (sigmoid(gamma * logit(p)) - 1/2))``, clipped to [0, 1]
  and renormalised (alpha), p clipped to [1e-9, 1 - 1e-9] inside the logit, as
  ART's ``ReverseSigmoid`` postprocessor; gamma fixed at ART's default 0.1
  (:data:`GAMMA`), beta in (0, 10].
- ``misinformation:tau``: adaptive misinformation (Kariyappa & Qureshi 2020,
  "Defending Against Model Stealing Attacks with Adaptive Misinformation",
  CVPR): ``(1 - a) p + a p_mis`` with ``a = sigmoid(nu (tau - max p))``, so that
  queries the box is unsure of (their out-of-distribution score) get the
  misinformation; nu = 1000 (:data:`NU`, the paper's), tau in (0, 1].
  **Deviation:** the paper trains a misinformation network to put its mass off
  the true class; ours needs no training: ``p_mis`` is the box's own answer with
  its classes cyclically shifted by a random non-zero offset per query, a
  confident-looking answer whose every class, the top-1 included, has moved.
  Randomised.

The metamodel reads a defended answer ``q`` as ``log q`` floored at
:data:`kennen.metamodel.encode.FLOOR` (a withheld or zero entry reads as the
floor), the same representation kennen-o reads for clean probabilities
(:func:`as_log`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kennen.errors import KennenError
from kennen.metamodel.encode import FLOOR
from kennen.seeds import Purpose, generator

GAMMA = 0.1  # reverse sigmoid's convergence parameter (ART's default)
NU = 1000.0  # adaptive misinformation's steepness (Kariyappa & Qureshi 2020)
CLIP = 1e-9  # reverse sigmoid's clip inside the logit (ART)
KL_FLOOR = 1e-6  # KL(p || q) reads q floored at this and renormalised (withheld entries are 0)


def round_probs(p: np.ndarray, decimals: int) -> np.ndarray:
    return np.round(p, decimals)


def top_k(p: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(-p, axis=-1, kind="stable")[..., :k]
    out = np.zeros_like(p)
    np.put_along_axis(out, order, np.take_along_axis(p, order, -1), -1)
    return out


def label_only(p: np.ndarray) -> np.ndarray:
    out = np.zeros_like(p)
    np.put_along_axis(out, p.argmax(-1)[..., None], 1.0, -1)
    return out


def gaussian_noise(p: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    q = np.clip(p + rng.normal(0.0, sigma, p.shape), 0.0, None)
    s = q.sum(-1, keepdims=True)
    return np.where(s > 0, q / np.where(s > 0, s, 1.0), 1.0 / p.shape[-1])  # all clipped away: uniform


def temperature(p: np.ndarray, t: float) -> np.ndarray:
    z = np.maximum(np.log(np.maximum(p, 1e-300)), FLOOR) / t
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def reverse_sigmoid(p: np.ndarray, beta: float, gamma: float = GAMMA) -> np.ndarray:
    c = np.clip(p, CLIP, 1.0 - CLIP)
    r = beta * (1.0 / (1.0 + np.exp(-gamma * np.log(c / (1.0 - c)))) - 0.5)
    q = np.clip(p - r, 0.0, 1.0)
    s = q.sum(-1, keepdims=True)
    return np.where(s > 0, q / np.where(s > 0, s, 1.0), 1.0 / p.shape[-1])


def misinformation(p: np.ndarray, tau: float, rng: np.random.Generator, nu: float = NU) -> np.ndarray:
    n = p.shape[-1]
    shift = rng.integers(1, n, size=p.shape[:-1])  # 1..n-1: every class moves
    idx = (np.arange(n) - shift[..., None]) % n  # p_mis[c] = p[c - shift]
    p_mis = np.take_along_axis(p, idx, -1)
    a = 1.0 / (1.0 + np.exp(np.clip(nu * (p.max(-1, keepdims=True) - tau), -700, 700)))
    return (1.0 - a) * p + a * p_mis


@dataclass(frozen=True)
class Kind:
    """One defence: its function, the meaning and range of its value, whether it draws random numbers."""

    apply: Callable[..., np.ndarray]
    value: str | None  # what the value means (None: the defence takes none)
    low: float = 0.0
    high: float = 0.0
    low_open: bool = False
    integer: bool = False
    randomised: bool = False
    argmax_kept: bool = True  # the top-1 label is always the box's own


KINDS: dict[str, Kind] = {
    "none": Kind(lambda p: p, None),
    "round": Kind(round_probs, "decimals", 1, 6, integer=True, argmax_kept=False),  # ties may reorder
    "topk": Kind(top_k, "k", 1, 10, integer=True),
    "label": Kind(label_only, None),
    "noise": Kind(gaussian_noise, "sigma", 0, 1, low_open=True, randomised=True, argmax_kept=False),
    "temperature": Kind(temperature, "T", 0.01, 1000),
    "reverse_sigmoid": Kind(reverse_sigmoid, "beta", 0, 10, low_open=True, argmax_kept=False),
    "misinformation": Kind(misinformation, "tau", 0, 1, low_open=True, randomised=True, argmax_kept=False),
}


@dataclass(frozen=True)
class Defence:
    """A defence and its strength, e.g. ``Defence("round", 2)``; ``str()`` gives ``round:2``."""

    name: str
    value: float | None = None

    @property
    def kind(self) -> Kind:
        return KINDS[self.name]

    def __str__(self) -> str:
        if self.value is None:
            return self.name
        v = int(self.value) if self.kind.integer else self.value
        return f"{self.name}:{v:g}" if isinstance(v, float) else f"{self.name}:{v}"

    def apply(self, p: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """The defended answers to probabilities ``p`` [..., 10]; ``rng`` is required by randomised defences."""
        args: list = [] if self.value is None else [int(self.value) if self.kind.integer else float(self.value)]
        if self.kind.randomised:
            if rng is None:
                raise ValueError(f"{self}: a randomised defence needs a generator")
            args.append(rng)
        return self.kind.apply(np.asarray(p, dtype=np.float64), *args)

    def seed(self, base: int, box: int) -> np.random.Generator:
        """The generator of box ``box`` under this setting: independent of the other settings and boxes."""
        return generator(base, Purpose.DEFENCE, zlib.crc32(str(self).encode()), box)


def parse_defence(text: str, where: str = "--defence") -> Defence:
    """``NAME`` or ``NAME:VALUE`` -> Defence; anything else is a one-line KennenError naming ``where``."""
    name, sep, raw = str(text).strip().partition(":")
    if name not in KINDS:
        raise KennenError(f"{where}: unknown defence {name!r} (expected one of {', '.join(KINDS)})")
    kind = KINDS[name]
    if kind.value is None:
        if sep:
            raise KennenError(f"{where}: {name} takes no value, got {text!r}")
        return Defence(name)
    if not sep or not raw:
        raise KennenError(f"{where}: {name} needs a value ({kind.value}), as in {name}:{_example(kind)}")
    try:
        value = float(raw)
    except ValueError:
        raise KennenError(f"{where}: {name}'s {kind.value} must be a number, got {raw!r}") from None
    bad_int = kind.integer and not value.is_integer()
    below = value <= kind.low if kind.low_open else value < kind.low
    if not math.isfinite(value) or bad_int or below or value > kind.high:
        lo = "(" if kind.low_open else "["
        what = "an integer in" if kind.integer else "in"
        raise KennenError(f"{where}: {name}'s {kind.value} must be {what} {lo}{kind.low:g}, {kind.high:g}], got {raw}")
    return Defence(name, int(value) if kind.integer else value)


def _example(kind: Kind) -> str:
    return f"{kind.high:g}" if kind.integer else f"{(kind.low + kind.high) / 2:g}"


def probabilities(log_outputs: np.ndarray) -> np.ndarray:
    """A box's answers as probabilities: softmax of its stored outputs (an ensemble stores the mean of its
    members' log-probabilities, which the softmax renormalises)."""
    z = log_outputs.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def as_log(q: np.ndarray) -> np.ndarray:
    """What the metamodel reads: log of the defended answers, floored at FLOOR (float32)."""
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(q), FLOOR).astype(np.float32)


def defend(defence: Defence, p: np.ndarray, base_seed: int) -> np.ndarray:
    """Answers [N, Q, 10] of every box to probabilities ``p`` under ``defence`` (row i: box i, its own generator)."""
    if not defence.kind.randomised:
        return defence.apply(p)
    return np.stack([defence.apply(p[i], defence.seed(base_seed, i)) for i in range(len(p))])


def utility(clean: np.ndarray, defended: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """What a defence costs its users, from probabilities [N, Q, 10] before and answers after, and labels [Q].

    - ``agreement``: % of (box, query) pairs whose top-1 label is unchanged;
    - ``acc_change``: mean over boxes of the change of top-1 accuracy on the queries (points);
    - ``kl``: mean KL(p || q) in nats, q floored at KL_FLOOR and renormalised (withheld entries are 0).
    """
    top_p, top_q = clean.argmax(-1), defended.argmax(-1)
    acc_p = (top_p == labels).mean(1)
    acc_q = (top_q == labels).mean(1)
    q = np.maximum(defended, KL_FLOOR)
    q = q / q.sum(-1, keepdims=True)
    p = np.maximum(clean, 1e-300)
    kl = np.where(clean > 0, clean * (np.log(p) - np.log(q)), 0.0).sum(-1)
    return {
        "agreement": round(100.0 * float((top_p == top_q).mean()), 2),
        "acc_change": round(100.0 * float((acc_q - acc_p).mean()), 2),
        "kl": round(float(kl.mean()), 4),
    }
