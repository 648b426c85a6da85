"""``kennen whiten``: ask someone's black box a few questions and say what it gives away.

A *target* is anything that maps a batch of 28x28 images to outputs:

- a saved model: a ``torch.export`` program (``.pt2``) or TorchScript (``.pt``, ``.ts``; PyTorch deprecates it),
- a Python callable ``package.module:name`` (a function or a model object),
- an HTTP endpoint ``http(s)://...`` that takes ``{"images": [B][28][28]}`` as JSON and answers
  ``{"outputs": ...}``.

``--output-type`` says what the box returns for each image: ``prob`` (10 probabilities),
``logprob`` (10 log-probabilities), ``ranking`` (class indices, most likely first, any k >= 1) or
``label`` (one class index). Scores go to kennen-o or kennen-io (``auto``: whichever had the
higher held-out mean accuracy and fits ``--max-queries``); rankings and labels go to kennen-i,
which reads only the top-1 label. Every image sent counts as one query, and the budget is checked
before anything is sent.

Trust (``kennen.targets``, ``kennen.pt2``): a ``.pt2`` file is inspected before torch reads it, and
refused, one line naming the member, if it could run code (pickled objects, native libraries,
legacy pickles, size expressions or tree specs that would evaluate code, operators outside
torch's tensor operators); an HTTP endpoint runs nothing here. A TorchScript file and a
``module:callable`` are their author's code, run when loaded and called: ``--trust-code`` says you
would run it, and without it they are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kennen.attributes import ATTRIBUTES
from kennen.data import MEAN, STD
from kennen.defences import Defence, as_log, defend, parse_defence, probabilities
from kennen.errors import KennenError
from kennen.metamodel.artifact import load_metamodel
from kennen.metamodel.calibration import nn_distance, one_hot, standardise
from kennen.metamodel.encode import OUTPUT_TYPES as OUTPUT_ENCODINGS
from kennen.metamodel.encode import encode
from kennen.metamodel.kennen_i import predict as kennen_i_predict
from kennen.metamodel.kennen_o import KennenO
from kennen.targets import OUTPUT_TYPES, SCORE_TYPES, BlackBox, Budget, HttpBox, parse_answers
from kennen.targets import load_target as load_target  # re-exported: kennen.whiten.load_target

METHODS = ("auto", "kennen-o", "kennen-io", "kennen-i")
FILES = {"kennen-o": "kennen_o", "kennen-io": "kennen_io", "kennen-i": "kennen_i"}


# --- the metamodels --------------------------------------------------------------------------------


@dataclass
class Metamodel:
    """A trained metamodel as ``whiten`` uses it, with its calibration and out-of-zoo reference.

    ``temperatures`` (kennen-o, kennen-io) or ``table`` (kennen-i) and ``reference`` come from
    ``kennen.metamodel.calibration``; a metamodel saved before they existed has none of them, and
    ``whiten`` then says its probabilities are uncalibrated and gives no out-of-zoo verdict.
    """

    method: str
    queries: torch.Tensor  # pixels [Q, 1, 28, 28]
    meta: dict[str, Any]
    model: KennenO | None = None
    fallback: np.ndarray | None = None
    target: str = "each"
    temperatures: np.ndarray | None = None  # [12]
    table: np.ndarray | None = None  # [12, 10]
    reference: np.ndarray | None = None  # the training boxes' standardised features [N, D]

    @property
    def n_queries(self) -> int:
        return len(self.queries)

    @property
    def held_out(self) -> dict[str, float]:
        return self.meta.get("test_accuracy", {})

    @property
    def calibrated(self) -> bool:
        return self.temperatures is not None or self.table is not None

    @property
    def min_confidence(self) -> float:
        """The abstention threshold chosen on validation (0: answer everything, for an uncalibrated metamodel)."""
        return float(self.meta.get("calibration", {}).get("min_confidence", 0.0)) if self.calibrated else 0.0


def load(method: str, models_dir: Path) -> Metamodel:
    stem = models_dir / FILES[method]
    tensors, meta = load_metamodel(stem)
    optional = {k: tensors[k].numpy().astype(np.float64) for k in ("calibration.temperature", "calibration.table",
                                                                    "ood.reference") if k in tensors}  # fmt: skip
    extra = {"temperatures": optional.get("calibration.temperature"), "table": optional.get("calibration.table"),
             "reference": optional.get("ood.reference")}  # fmt: skip
    try:
        if method == "kennen-i":
            target = meta["target"]
            return Metamodel(method, tensors[f"queries.{target}"], meta,
                             fallback=tensors[f"fallback.{target}"].numpy(), target=target, **extra)  # fmt: skip
        state = {k.removeprefix("mlp."): v for k, v in tensors.items() if k.startswith("mlp.")}
        model = KennenO(state["mean"].numel(), meta["hidden"])
        model.load_state_dict(state)
        mm = Metamodel(method, tensors["queries"], meta, model=model.eval(), **extra)
    except (KeyError, RuntimeError, ValueError) as e:
        raise KennenError(
            f"{stem}: not a metamodel this version can read ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
            f"run `dvc repro {stem.name}`"
        ) from None
    if mm.meta.get("output", "prob") not in OUTPUT_ENCODINGS:
        raise KennenError(f"{stem}: trained on unknown outputs {mm.meta.get('output')!r}; run `dvc repro {stem.name}`")
    return mm


def choose(output_type: str, method: str, models_dir: Path, max_queries: int | None) -> Metamodel:
    """The metamodel to use: the one asked for, or (``auto``) the best available one the output type allows."""
    if method == "auto":
        candidates = ["kennen-io", "kennen-o"] if output_type in SCORE_TYPES else ["kennen-i"]
    elif method in ("kennen-o", "kennen-io") and output_type not in SCORE_TYPES:
        raise KennenError(f"--method {method}: needs scores (--output-type prob or logprob), not {output_type}")
    else:
        candidates = [method]
    loaded, errors = [], []
    for c in candidates:
        try:
            loaded.append(load(c, models_dir))
        except KennenError as e:
            errors.append(str(e))
    if not loaded:
        raise KennenError("; ".join(errors))
    fits = [m for m in loaded if max_queries is None or m.n_queries <= max_queries]
    if not fits:
        cheapest = min(loaded, key=lambda m: m.n_queries)
        raise KennenError(
            f"--max-queries: {max_queries} is below the {cheapest.n_queries} queries {cheapest.method} needs"
        )
    return max(fits, key=lambda m: m.held_out.get("acc.mean", 0.0))


# --- whitening -------------------------------------------------------------------------------------


@dataclass
class Finding:
    """One attribute's answer. ``value`` is "unknown" when ``probability`` is below the threshold."""

    attribute: str
    value: str
    probability: float | None  # calibrated probability of ``best_guess`` (uncalibrated kennen-i: None)
    best_guess: str  # the most probable value, answered or not
    answered: bool
    raw_probability: float | None  # the metamodel's softmax before calibration (kennen-o, kennen-io)
    held_out_accuracy: float | None  # class-balanced accuracy on boxes of configurations it never saw (%), 95% interval
    held_out_low: float | None = None
    held_out_high: float | None = None


@dataclass
class OutOfZoo:
    """Whether the box's answers lie outside what the zoo covers (``calibration.nn_distance``)."""

    outside: bool
    distance: float
    threshold: float
    quantile: float

    def line(self) -> str:
        q = f"{100 * self.quantile:g}%"
        if self.outside:
            return (f"OUT OF THE ZOO: its answers are farther from every training box (distance {self.distance:.3g}) "
                    f"than {q} of the zoo's boxes are from their nearest neighbour ({self.threshold:.3g}); "
                    "treat every answer below as a guess")  # fmt: skip
        return f"within the zoo: distance {self.distance:.3g} to the nearest training box ({q} of the zoo's: <= {self.threshold:.3g})"


@dataclass
class Report:
    target: str
    method: str
    output_type: str
    queries: int
    findings: list[Finding]
    zoo: dict[str, Any]
    min_confidence: float = 0.0
    calibration: dict[str, Any] = field(default_factory=dict)  # the metamodel's (empty: uncalibrated)
    ood: OutOfZoo | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    defence: str | None = None  # the output defence applied to the answers before the metamodel read them

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "method": self.method,
            "output_type": self.output_type,
            "queries": self.queries,
            "min_confidence": self.min_confidence,
            "defence": self.defence,
            "calibration": self.calibration or None,
            "out_of_zoo": None if self.ood is None else self.ood.__dict__,
            "zoo": self.zoo,
            "provenance": self.provenance,
            "attributes": [f.__dict__ for f in self.findings],
        }

    def table(self) -> str:
        zoo = ", ".join(f"{k} {v}" for k, v in self.zoo.items())
        cal = self.calibration
        if cal:
            calibration = (f"calibrated probabilities ({cal.get('method')}; ECE on the zoo's boxes out of fold "
                           f"{cal.get('ece_before', float('nan')):.3f} -> {cal.get('ece_after', float('nan')):.3f}); "
                           f"below {100 * self.min_confidence:.0f}% the answer is unknown (--min-confidence)")  # fmt: skip
        else:
            calibration = "UNCALIBRATED metamodel (saved before calibration existed): probabilities are not confidence"
        lines = [
            f"target: {self.target}",
            f"metamodel: {self.method} on {self.output_type} outputs, {self.queries} queries sent",
            f"trained on the zoo: {zoo}",
            calibration,
            self.ood.line() if self.ood is not None else "out of the zoo: no reference in this metamodel",
            *([_DEFENDED.format(self.defence)] if self.defence else []),
            "",
            f"{'attribute':<10} {'answer':<12} {'probability':>11} {'held-out acc. [95% CI]':>24}  best guess",
        ]
        for f in self.findings:
            p = "–" if f.probability is None else f"{100 * f.probability:.1f}%"
            if f.probability is None and f.raw_probability is not None:
                p = f"{100 * f.raw_probability:.1f}% raw"  # an uncalibrated metamodel's softmax
            acc = "–" if f.held_out_accuracy is None else f"{f.held_out_accuracy:.1f}%"
            if f.held_out_low is not None and f.held_out_high is not None:
                acc += f" [{f.held_out_low:.1f}, {f.held_out_high:.1f}]"
            guess = "" if f.answered else f.best_guess
            lines.append(f"{f.attribute:<10} {f.value:<12} {p:>11} {acc:>24}  {guess}".rstrip())
        return "\n".join(lines)


_DEFENDED = (
    "answers defended with {} before the metamodel read them: a non-adaptive attacker, whose metamodel and "
    "calibration saw only undefended outputs (an attacker who adapts: reports/metrics/defences.json)"
)


def _out_of_zoo(mm: Metamodel, features: np.ndarray) -> OutOfZoo | None:
    limit = mm.meta.get("ood", {}).get("threshold")
    if mm.reference is None or limit is None:
        return None
    distance = float(nn_distance(features[None, :], mm.reference)[0])
    return OutOfZoo(distance > limit, round(distance, 5), float(limit), float(mm.meta["ood"].get("quantile", 0.99)))


def whiten(
    box: BlackBox,
    target: str,
    output_type: str,
    method: str = "auto",
    models_dir: Path = Path("models"),
    max_queries: int | None = None,
    input_scale: str = "normalised",
    batch_size: int = 100,
    min_confidence: float | None = None,
    defence: Defence | str | None = None,
) -> Report:
    """Query ``box`` with the chosen metamodel's images and predict the 12 attributes.

    An attribute whose calibrated probability is below ``min_confidence`` (None: the threshold the
    metamodel chose on validation) is answered "unknown". ``defence`` (``NAME:VALUE``, see
    ``kennen.defences``) is applied to the box's scores before the metamodel reads them, as a
    deployment would apply it: what would that setting still give away? Randomised defences draw
    from a generator seeded with 0, so a report can be repeated.
    """
    if output_type not in OUTPUT_TYPES:
        raise KennenError(f"--output-type: expected one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
    if method not in METHODS:
        raise KennenError(f"--method: expected one of {', '.join(METHODS)}, got {method!r}")
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise KennenError(f"--min-confidence: must be in [0, 1], got {min_confidence}")
    if isinstance(defence, str):
        defence = parse_defence(defence)
    if defence is not None and output_type not in SCORE_TYPES:
        raise KennenError(f"--defence: {defence} acts on scores (--output-type prob or logprob), not on {output_type}")
    mm = choose(output_type, method, models_dir, max_queries)
    threshold = mm.min_confidence if min_confidence is None else min_confidence
    budget = Budget(max_queries)
    if isinstance(box, HttpBox):
        box.budget = budget
    pixels = mm.queries.numpy().astype(np.float32)
    images = (pixels - MEAN) / STD if input_scale == "normalised" else pixels
    answers = []
    for start in range(0, len(images), batch_size):
        chunk = np.ascontiguousarray(images[start : start + batch_size], dtype=np.float32)
        if not isinstance(box, HttpBox):
            budget.spend(len(chunk))
        answers.append(parse_answers(box(chunk), output_type, len(chunk), target))
    answers_all = np.concatenate(answers)
    if defence is not None:  # [Q, 10] log-probabilities -> defended answers, read as the defences stage reads them
        answers_all = as_log(defend(defence, probabilities(answers_all)[None], 0)[0])
    held = mm.held_out
    rows = []  # (attribute, index of the best value, calibrated probability or None, raw probability or None)
    if mm.method == "kennen-i":
        labels = answers_all.argmax(1) if output_type in SCORE_TYPES else answers_all  # kennen-i reads the top-1 only
        pred = kennen_i_predict(labels[None, :], mm.fallback, mm.target)[0]
        per_attribute = labels if len(labels) == len(ATTRIBUTES) else np.repeat(labels, len(ATTRIBUTES))
        for i, a in enumerate(ATTRIBUTES):
            p = None if mm.table is None else float(mm.table[i, per_attribute[i]])
            rows.append((a, int(pred[i]), p, None))
        features = one_hot(labels[None, :])[0]
    else:
        # The MLP sees the answers encoded as it was trained (``output`` in its JSON: prob, top<k>, bottom1).
        x = encode(torch.from_numpy(answers_all), mm.meta.get("output", "prob")).reshape(1, -1)
        with torch.no_grad():
            logits = mm.model(x)
        for i, a in enumerate(ATTRIBUTES):
            z = logits[a.key][0].double()
            raw = torch.softmax(z, 0)
            cal = torch.softmax(z / float(mm.temperatures[i]), 0) if mm.temperatures is not None else None
            j = int(raw.argmax())  # a temperature never changes the arg-max
            rows.append((a, j, None if cal is None else float(cal[j]), float(raw[j])))
        features = standardise(mm.model, x)[0]
    findings = []
    for a, j, p, raw in rows:
        confidence = p if p is not None else (raw if raw is not None else 1.0)
        answered = confidence >= threshold
        findings.append(Finding(
            a.key, a.labels[j] if answered else "unknown", None if p is None else round(p, 4), a.labels[j], answered,
            None if raw is None else round(raw, 4), held.get(f"acc.{a.key}"), held.get(f"acc.{a.key}_low"),
            held.get(f"acc.{a.key}_high"),
        ))  # fmt: skip
    calibration = mm.meta.get("calibration", {}) if mm.calibrated else {}
    provenance = mm.meta.get("provenance", {}) | {"metamodel": str(models_dir / FILES[mm.method])}
    return Report(target, mm.method, output_type, budget.sent, findings, mm.meta.get("zoo", {}), threshold,
                  calibration, _out_of_zoo(mm, features), provenance, None if defence is None else str(defence))  # fmt: skip
