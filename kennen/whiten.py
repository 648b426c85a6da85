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

Trust: every file target may run its author's code. A TorchScript file and a ``module:callable`` do so
by design, and ``torch.export.load`` is not weights-only: a ``.pt2`` archive can carry pickled
constants (read with a plain ``pickle.loads``) and native libraries, whatever
``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` says. Whiten only files you would run; an HTTP endpoint runs nothing here.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kennen.attributes import ATTRIBUTES
from kennen.data import MEAN, STD
from kennen.errors import KennenError
from kennen.metamodel.artifact import load_metamodel
from kennen.metamodel.encode import OUTPUT_TYPES as OUTPUT_ENCODINGS
from kennen.metamodel.encode import encode
from kennen.metamodel.kennen_i import predict as kennen_i_predict
from kennen.metamodel.kennen_o import KennenO

OUTPUT_TYPES = ("prob", "logprob", "ranking", "label")
METHODS = ("auto", "kennen-o", "kennen-io", "kennen-i")
SCORE_TYPES = ("prob", "logprob")
FILES = {"kennen-o": "kennen_o", "kennen-io": "kennen_io", "kennen-i": "kennen_i"}

BlackBox = Callable[[np.ndarray], Any]


@dataclass
class Budget:
    """Counts the images sent to the target and refuses to send past ``limit`` (``None``: no limit)."""

    limit: int | None = None
    sent: int = 0

    def spend(self, n: int) -> None:
        if self.limit is not None and self.sent + n > self.limit:
            raise KennenError(f"--max-queries: sending {n} more images would exceed the budget of {self.limit}")
        self.sent += n


# --- targets ---------------------------------------------------------------------------------------


def _torch_box(module: Callable, spec: str) -> BlackBox:
    def call(images: np.ndarray) -> Any:
        try:
            with torch.no_grad():
                out = module(torch.from_numpy(images))
        except Exception as e:  # noqa: BLE001 - whatever the user's model raises, say which call failed
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise KennenError(
                f"{spec}: failed on a batch of {len(images)} images ({type(e).__name__}: {first}); "
                "a program exported with a fixed batch size needs --batch-size set to it"
            ) from None
        return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out

    return call


@dataclass
class HttpBox:
    """A black box behind HTTP: POST ``{"images": ...}``, answer ``{"outputs": ...}``.

    Timeouts, connection errors, 429 and 5xx answers are retried ``retries`` times with
    exponential backoff (``backoff``, 2x, 4x, ... seconds); other HTTP errors stop at once.
    """

    url: str
    timeout: float = 10.0
    retries: int = 3
    backoff: float = 0.5
    budget: Budget = field(default_factory=Budget)  # every attempt counts: a retried request may have arrived

    def __call__(self, images: np.ndarray) -> Any:
        body = json.dumps({"images": images[:, 0].round(6).tolist()}).encode()
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"}, method="POST")
            self.budget.spend(len(images))
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code} {e.reason}"
                if e.code == 429 or e.code >= 500:
                    continue
                raise KennenError(f"{self.url}: the target answered {last}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
                last = str(getattr(e, "reason", e)) or type(e).__name__
                continue
            try:
                answer = json.loads(raw)
            except json.JSONDecodeError:
                raise KennenError(f"{self.url}: the target's answer is not JSON") from None
            if not isinstance(answer, dict) or "outputs" not in answer:
                raise KennenError(f'{self.url}: the target\'s JSON answer has no "outputs" key')
            return answer["outputs"]
        raise KennenError(f"{self.url}: no answer after {self.retries + 1} attempts ({last})")


@contextlib.contextmanager
def _weights_only_loads():
    old = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = old


def load_target(spec: str, timeout: float = 10.0, retries: int = 3) -> BlackBox:
    """A callable black box from a file path, ``module:callable`` or an HTTP(S) URL."""
    if spec.startswith(("http://", "https://")):
        return HttpBox(spec, timeout, retries)
    path = Path(spec)
    if path.suffix in (".pt2", ".pt", ".ts"):
        if not path.is_file():
            raise KennenError(f"{spec}: model file not found")
        try:
            if path.suffix == ".pt2":
                # This forbids full unpickling of the archive's tensor payloads, but torch.export.load still
                # unpickles opaque constants and may load native libraries: not a safe load (module docstring).
                with _weights_only_loads():
                    program = torch.export.load(str(path))
                return _torch_box(program.module(), spec)
            return _torch_box(torch.jit.load(str(path), map_location="cpu").eval(), spec)
        except Exception as e:  # noqa: BLE001 - any failure to deserialise is the user's file
            raise KennenError(f"{spec}: cannot load the model ({type(e).__name__}: {e})") from None
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise KennenError(f"{spec}: not a .pt2/.pt/.ts file, a module:callable or an http(s):// URL")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: modules in the current folder are importable
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise KennenError(f"{spec}: cannot import the callable ({e})") from None
    if not callable(obj):
        raise KennenError(f"{spec}: not callable")
    if isinstance(obj, torch.nn.Module):
        obj.eval()
    return _torch_box(obj, spec)


# --- answers ---------------------------------------------------------------------------------------


def parse_answers(raw: Any, output_type: str, n: int, source: str) -> np.ndarray:
    """The box's answers as log-probabilities [n, 10] (scores) or top-1 labels [n] (rankings, labels)."""
    try:
        a = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise KennenError(f"{source}: the answer is not a numeric array") from None
    if output_type in SCORE_TYPES:
        if a.shape != (n, 10):
            raise KennenError(f"{source}: answered shape {list(a.shape)} for {n} images; {output_type} needs [{n}, 10]")
        if np.isnan(a).any() or (output_type == "prob" and not np.isfinite(a).all()):
            raise KennenError(f"{source}: answers must not contain NaN or infinities")
        if output_type == "prob":
            if a.min() < -1e-6 or abs(a.sum(1) - 1).max() > 1e-3:
                raise KennenError(f"{source}: answers are not probabilities (each row must be >= 0 and sum to 1)")
            a = np.log(np.clip(a, 1e-39, None))
        else:
            lse = np.log(np.exp(np.clip(a, -700, 700)).sum(1))
            if a.max() > 1e-4 or abs(lse).max() > 1e-3:
                raise KennenError(f"{source}: answers are not log-probabilities (each row's exp must sum to 1)")
        return np.clip(a, np.log(1e-39), 0.0).astype(np.float32)
    if output_type == "ranking":
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2 or a.shape[0] != n or a.shape[1] < 1:
            raise KennenError(f"{source}: answered shape {list(a.shape)} for {n} images; ranking needs [{n}, k]")
        a = a[:, 0]
    elif a.shape != (n,):
        raise KennenError(f"{source}: answered shape {list(a.shape)} for {n} images; label needs [{n}]")
    if not np.all((a == np.round(a)) & (a >= 0) & (a <= 9)):
        raise KennenError(f"{source}: labels must be class indices 0..9")
    return a.astype(np.int64)


# --- the metamodels --------------------------------------------------------------------------------


@dataclass
class Metamodel:
    """A trained metamodel as ``whiten`` uses it."""

    method: str
    queries: torch.Tensor  # pixels [Q, 1, 28, 28]
    meta: dict[str, Any]
    model: KennenO | None = None
    fallback: np.ndarray | None = None
    target: str = "each"

    @property
    def n_queries(self) -> int:
        return len(self.queries)

    @property
    def held_out(self) -> dict[str, float]:
        return self.meta.get("test_accuracy", {})


def load(method: str, models_dir: Path) -> Metamodel:
    stem = models_dir / FILES[method]
    tensors, meta = load_metamodel(stem)
    try:
        if method == "kennen-i":
            target = meta["target"]
            return Metamodel(method, tensors[f"queries.{target}"], meta,
                             fallback=tensors[f"fallback.{target}"].numpy(), target=target)  # fmt: skip
        state = {k.removeprefix("mlp."): v for k, v in tensors.items() if k.startswith("mlp.")}
        model = KennenO(state["mean"].numel(), meta["hidden"])
        model.load_state_dict(state)
        mm = Metamodel(method, tensors["queries"], meta, model=model.eval())
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
    attribute: str
    value: str
    probability: float | None  # the metamodel's probability of that value (None for kennen-i: a label, not a score)
    held_out_accuracy: float | None


@dataclass
class Report:
    target: str
    method: str
    output_type: str
    queries: int
    findings: list[Finding]
    zoo: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "method": self.method,
            "output_type": self.output_type,
            "queries": self.queries,
            "zoo": self.zoo,
            "attributes": [f.__dict__ for f in self.findings],
        }

    def table(self) -> str:
        zoo = ", ".join(f"{k} {v}" for k, v in self.zoo.items())
        lines = [
            f"target: {self.target}",
            f"metamodel: {self.method} on {self.output_type} outputs, {self.queries} queries sent",
            f"trained on the zoo: {zoo}",
            "",
            f"{'attribute':<10} {'predicted':<12} {'probability':>11} {'held-out acc.':>14}",
        ]
        for f in self.findings:
            p = "–" if f.probability is None else f"{100 * f.probability:.1f}%"
            acc = "–" if f.held_out_accuracy is None else f"{f.held_out_accuracy:.1f}%"
            lines.append(f"{f.attribute:<10} {f.value:<12} {p:>11} {acc:>14}")
        return "\n".join(lines)


def whiten(
    box: BlackBox,
    target: str,
    output_type: str,
    method: str = "auto",
    models_dir: Path = Path("models"),
    max_queries: int | None = None,
    input_scale: str = "normalised",
    batch_size: int = 100,
) -> Report:
    """Query ``box`` with the chosen metamodel's images and predict the 12 attributes."""
    if output_type not in OUTPUT_TYPES:
        raise KennenError(f"--output-type: expected one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
    if method not in METHODS:
        raise KennenError(f"--method: expected one of {', '.join(METHODS)}, got {method!r}")
    mm = choose(output_type, method, models_dir, max_queries)
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
    held = mm.held_out
    findings = []
    if mm.method == "kennen-i":
        labels = answers_all.argmax(1) if output_type in SCORE_TYPES else answers_all  # kennen-i reads the top-1 only
        pred = kennen_i_predict(labels[None, :], mm.fallback, mm.target)[0]
        for i, a in enumerate(ATTRIBUTES):
            findings.append(Finding(a.key, a.labels[pred[i]], None, held.get(f"acc.{a.key}")))
    else:
        # The MLP sees the answers encoded as it was trained (``output`` in its JSON: prob, top<k>, bottom1).
        x = encode(torch.from_numpy(answers_all), mm.meta.get("output", "prob"))
        with torch.no_grad():
            logits = mm.model(x.reshape(1, -1))
        for a in ATTRIBUTES:
            p = torch.softmax(logits[a.key][0], 0)
            j = int(p.argmax())
            findings.append(Finding(a.key, a.labels[j], round(float(p[j]), 4), held.get(f"acc.{a.key}")))
    return Report(target, mm.method, output_type, budget.sent, findings, mm.meta.get("zoo", {}))
