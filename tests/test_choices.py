"""Smoke test of the ``choices`` stage: its ``main`` for each method on a tiny zoo built by the real stages.

The tiny zoo is ``tests/test_crafted_stages.py``'s (the upstream stages in-process, tiny params of
``conftest.py``); every candidate runs on it in seconds.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from kennen.config import load_params
from kennen.io import read_csv
from kennen.metamodel import choices
from kennen.queries import read_boxes
from kennen.splits import read_split
from stages import choices as stage
from tests.conftest import REPO
from tests.conftest import chdir as _chdir
from tests.test_crafted_stages import tiny_zoo as tiny_zoo  # noqa: F401  (the module-scoped fixture, reused)

CANDIDATES = {"kennen_o": choices.KENNEN_O, "kennen_i": choices.KENNEN_I, "kennen_io": choices.KENNEN_IO}


def run_choices(root: Path, method: str) -> int:
    """``stages.choices.main`` with the ``dvc.yaml`` command line of ``choices@<method>``, in ``root``."""
    cmd = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["choices"]["do"]["cmd"]
    argv = shlex.split(cmd.replace("${item}", method))
    assert argv[:3] == ["python", "-m", "stages.choices"]
    with _chdir(root):
        return stage.main(argv[3:])


@pytest.mark.parametrize("method", choices.METHODS)
@pytest.mark.slow
def test_choices_stage(tiny_zoo, method, monkeypatch):  # noqa: F811
    # kennen_io on the process pool: the candidates' tasks must pickle; the others in-process (faster).
    monkeypatch.setenv("KENNEN_EXECUTOR", "process" if method == "kennen_io" else "serial")
    monkeypatch.setenv("KENNEN_WORKERS", "2")
    assert run_choices(tiny_zoo, method) == 0
    out = json.loads((tiny_zoo / f"reports/metrics/choices/{method}.json").read_text())
    rows = out["rows"]
    names = [r["setting"] for r in rows]
    assert names[: len(CANDIDATES[method])] == list(CANDIDATES[method])  # every candidate, in order
    assert len(rows) - len(CANDIDATES[method]) <= 1  # plus params' default when it is none of them
    assert sum(r["is_default"] for r in rows) == 1
    assert all(0 <= r["validation_mean"] <= 100 and r["seconds"] >= 0 for r in rows)
    assert ("mean_pixel_change" in rows[0]) == (method == "kennen_io")
    assert len(read_csv(tiny_zoo / f"reports/plots/choices/{method}.csv")) == len(rows)

    params = load_params(tiny_zoo / "params.yaml")
    boxes = read_boxes(tiny_zoo / "data/queries/boxes.csv")
    r = read_split(tiny_zoo / "data/splits", "r", boxes)
    val = choices.validation_carve(boxes, r["train"], params["seed"])
    assert (out["n_train"], out["n_validation"]) == (len(val["train"]), len(val["test"]))
    assert not set(val["train"] + val["test"]) & set(r["test"])  # the R test boxes are never read
    assert set(val["train"] + val["test"]) == set(r["train"]) and not set(val["train"]) & set(val["test"])


def test_default_row_follows_params():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    ko = params["kennen_o"]
    chosen = choices.Optimiser(**ko["optimisers"][ko["optimiser"]])
    assert chosen in choices.KENNEN_O.values()  # params' optimiser is one of the candidates, no extra row
    assert (params["kennen_i"]["step"]["rule"], params["kennen_i"]["step"]["lr"]) in choices.KENNEN_I.values()
    step = params["kennen_io"]["step"]
    assert any(c.paper_shape and (c.rule, c.lr) == (step["rule"], step["lr"]) for c in choices.KENNEN_IO.values())
