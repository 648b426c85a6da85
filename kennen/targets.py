"""The targets of ``kennen whiten``: loading a black box, talking to it, reading its answers.

A target is a ``torch.export`` archive (``.pt2``), a TorchScript file (``.pt``, ``.ts``), a Python
callable ``package.module:name`` or an HTTP(S) endpoint (:class:`HttpBox`).

Trust: a ``.pt2`` file is inspected before torch reads it and refused if it could run code
(``kennen.pt2``); an HTTP endpoint runs nothing here. A TorchScript file and a ``module:callable``
are their author's code, run when loaded and called: they are refused unless the caller says
``trust_code`` (``--trust-code``).
"""

from __future__ import annotations

import contextlib
import http.client
import importlib
import json
import math
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kennen.errors import KennenError
from kennen.limits import ANSWER_MB, loads_bounded, megabytes, read_stream
from kennen.pt2 import load_program

OUTPUT_TYPES = ("prob", "logprob", "ranking", "label")
SCHEMES = ("http", "https")
_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
SCORE_TYPES = ("prob", "logprob")

BlackBox = Callable[[np.ndarray], Any]


@dataclass
class Budget:
    """Counts the images sent to the target and refuses to send past ``limit`` (``None``: no limit)."""

    limit: int | None = None
    sent: int = 0

    def fits(self, n: int) -> bool:
        return self.limit is None or self.sent + n <= self.limit

    def spend(self, n: int) -> None:
        if not self.fits(n):
            raise KennenError(f"--max-queries: sending {n} more images would exceed the budget of {self.limit}")
        self.sent += n


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200]}" if text else type(e).__name__


def _torch_box(module: Callable, spec: str) -> BlackBox:
    def call(images: np.ndarray) -> Any:
        try:
            with torch.no_grad():
                out = module(torch.from_numpy(images))
        except SystemExit as e:
            raise KennenError(f"{spec}: exited (SystemExit: {e.code}) when called on {len(images)} images") from None
        except Exception as e:  # noqa: BLE001 - whatever the user's model raises, say which call failed
            raise KennenError(
                f"{spec}: failed on a batch of {len(images)} images ({_one_line(e)}); "
                "a program exported with a fixed batch size needs --batch-size set to it"
            ) from None
        return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out

    return call


def check_timeout(timeout: float) -> float:
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise KennenError(f"--timeout: must be a finite number of seconds above 0, got {timeout}")
    return float(timeout)


@dataclass
class HttpBox:
    """A black box behind HTTP: POST ``{"images": ...}``, answer ``{"outputs": ...}``.

    ``timeout`` bounds each attempt as a whole (connect, send, status, headers and body), not each
    read of the socket. Timeouts, connection errors, 429 and 5xx answers are retried ``retries``
    times with exponential backoff (``backoff``, 2x, 4x, ... seconds); other HTTP answers stop at
    once, and so does a retry the budget cannot pay for. Proxies and redirects are not followed.
    An answer is bounded (``kennen.limits``): its body by ``KENNEN_MAX_ANSWER_MB`` (the declared
    Content-Length first, then the bytes as they arrive) and its JSON by ``KENNEN_MAX_JSON_DEPTH``.
    """

    url: str
    timeout: float = 10.0
    retries: int = 3
    backoff: float = 0.5
    budget: Budget = field(default_factory=Budget)  # every attempt counts: a retried request may have arrived

    def __post_init__(self) -> None:
        self.timeout = check_timeout(self.timeout)
        try:
            u = urllib.parse.urlsplit(self.url)
            port = u.port
        except ValueError as e:
            raise KennenError(f"{self.url}: not a valid URL ({e})") from None
        if u.scheme not in ("http", "https") or not u.hostname:
            raise KennenError(f"{self.url}: not a valid URL (needs http:// or https:// and a host)")
        self._connection = (http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection,
                            u.hostname, port)  # fmt: skip
        self._path = (u.path or "/") + (f"?{u.query}" if u.query else "")

    def __call__(self, images: np.ndarray) -> Any:
        body = json.dumps({"images": images[:, 0].round(6).tolist()}).encode()
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                if not self.budget.fits(len(images)):
                    raise KennenError(
                        f"{self.url}: the target answered {last}; a retry of {len(images)} images would exceed "
                        f"the --max-queries budget of {self.budget.limit}"
                    )
                time.sleep(self.backoff * 2 ** (attempt - 1))
            self.budget.spend(len(images))
            try:
                status, reason, raw = self._post(body)
            except (OSError, http.client.HTTPException) as e:  # TimeoutError and ConnectionError are OSErrors
                last = _one_line(e)
                continue
            if status == 429 or status >= 500:
                last = f"HTTP {status} {reason}"
                continue
            if not 200 <= status < 300:
                raise KennenError(f"{self.url}: the target answered HTTP {status} {reason}")
            try:
                answer = loads_bounded(raw, self.url, size=ANSWER_MB)
            except ValueError:
                raise KennenError(f"{self.url}: the target's answer is not JSON") from None
            if not isinstance(answer, dict) or "outputs" not in answer:
                raise KennenError(f'{self.url}: the target\'s JSON answer has no "outputs" key')
            return answer["outputs"]
        raise KennenError(f"{self.url}: no answer after {self.retries + 1} attempts ({last})")

    def _post(self, body: bytes) -> tuple[int, str, bytes]:
        """One POST, all of it within ``timeout`` seconds: (status, reason, body)."""
        cls, host, port = self._connection
        conn = cls(host, port, timeout=self.timeout)  # the socket's own limit, on each connect, send and read
        outcome: dict[str, Any] = {}

        def attempt() -> None:
            try:
                conn.request("POST", self._path, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                outcome["answer"] = (response.status, response.reason, self._body(response))
            except Exception as e:  # noqa: BLE001 - handed to the caller's thread
                outcome["error"] = e

        worker = threading.Thread(target=attempt, daemon=True)
        worker.start()
        worker.join(self.timeout)
        late = worker.is_alive()  # decided before the shutdown below makes the worker fail on its own
        sock = conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # ends a read the worker is still blocked in
        conn.close()
        if late or not outcome:
            raise TimeoutError(f"no complete answer within {self.timeout:g} s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["answer"]

    def _body(self, response: http.client.HTTPResponse) -> bytes:
        """The answer's body, refused past ``KENNEN_MAX_ANSWER_MB`` by its Content-Length or as it arrives."""
        length = (response.getheader("Content-Length") or "").strip()
        if length.isdigit() and int(length) > ANSWER_MB.bytes():
            raise ANSWER_MB.refuse(self.url, f"the answer declares {megabytes(int(length))} (Content-Length)")
        return read_stream(response, ANSWER_MB, self.url, noun="the answer")


def load_target(spec: str, timeout: float = 10.0, retries: int = 3, trust_code: bool = False) -> BlackBox:
    """A callable black box from a file path, ``module:callable`` or an HTTP(S) URL.

    TorchScript files and ``module:callable`` targets run their author's code: without
    ``trust_code`` they are refused. ``.pt2`` files are inspected first (``kennen.pt2``).
    """
    scheme = _SCHEME.match(spec)
    if scheme and scheme["scheme"].lower() not in SCHEMES:
        raise KennenError(
            f"{spec}: unsupported scheme {scheme['scheme']}://; kennen whiten speaks "
            f"{' and '.join(f'{s}://' for s in SCHEMES)} (or give a .pt2/.pt/.ts file or a module:callable)"
        )
    if scheme:
        return HttpBox(spec, timeout, retries)
    path = Path(spec)
    if path.suffix in (".pt2", ".pt", ".ts"):
        if not path.is_file():
            raise KennenError(f"{spec}: model file not found")
        if path.suffix == ".pt2":
            program = load_program(path)
            try:
                return _torch_box(program.module(), spec)
            except Exception as e:  # noqa: BLE001 - a program torch cannot turn into a module is the user's file
                raise KennenError(f"{spec}: cannot load the model ({_one_line(e)})") from None
        if not trust_code:
            raise KennenError(
                f"{spec}: a TorchScript file is its author's code and runs when loaded; "
                "--trust-code allows it (or save the model with torch.export, which kennen inspects)"
            )
        try:
            return _torch_box(torch.jit.load(str(path), map_location="cpu").eval(), spec)
        except Exception as e:  # noqa: BLE001 - any failure to deserialise is the user's file
            raise KennenError(f"{spec}: cannot load the model ({_one_line(e)})") from None
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise KennenError(f"{spec}: not a .pt2/.pt/.ts file, a module:callable or an http(s):// URL")
    if not trust_code:
        raise KennenError(f"{spec}: a module:callable is Python code, run on import; --trust-code allows it")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: modules in the current folder are importable
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - a SyntaxError, an import that raises or exits
        raise KennenError(f"{spec}: cannot import the callable ({_one_line(e)})") from None
    if not callable(obj):
        raise KennenError(f"{spec}: not callable")
    if isinstance(obj, torch.nn.Module):
        obj.eval()
    return _torch_box(obj, spec)


def parse_answers(raw: Any, output_type: str, n: int, source: str) -> np.ndarray:
    """The box's answers as log-probabilities [n, 10] (scores) or top-1 labels [n] (rankings, labels)."""
    try:
        a = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise KennenError(f"{source}: the answer is not a numeric array") from None
    if output_type in SCORE_TYPES:
        if a.shape != (n, 10):
            raise KennenError(f"{source}: answered shape {list(a.shape)} for {n} images; {output_type} needs [{n}, 10]")
        if np.isnan(a).any():
            raise KennenError(
                f"{source}: answers contain NaN: a diverged or broken model outputs NaN (the zoo's prune stage drops "
                "such models), so there is nothing to whiten"
            )
        if output_type == "prob" and not np.isfinite(a).all():
            raise KennenError(f"{source}: answers must not contain infinities")
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
