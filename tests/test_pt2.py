"""``kennen.pt2``: a ``.pt2`` archive is inspected before torch reads it; an honest one loads, a malicious one runs nothing."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from kennen import pt2
from kennen.cli import main as cli
from kennen.errors import KennenError
from kennen.targets import load_target

SYMBOL = "Symbol('s77', positive=True, integer=True)"


def small_net() -> nn.Module:
    """An MNIST CNN with everything the zoo's and transfer's nets use: conv, batch norm, max pool, dropout."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 5), nn.BatchNorm2d(4), nn.MaxPool2d(2), nn.PReLU(), nn.Flatten(),
        nn.Linear(4 * 12 * 12, 16), nn.ELU(), nn.Dropout(0.5), nn.Linear(16, 10), nn.LogSoftmax(dim=1),
    ).eval()  # fmt: skip


def save(net: nn.Module, path: Path, dynamic: bool) -> Path:
    shapes = {"dynamic_shapes": ({0: torch.export.Dim("batch", min=1, max=1024)},)} if dynamic else {}
    torch.export.save(torch.export.export(net, (torch.zeros(2, 1, 28, 28),), **shapes), str(path))
    return path


@pytest.fixture(scope="module")
def honest(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """The members of an honest archive, static and dynamic batch, by name (with the root folder)."""
    root = tmp_path_factory.mktemp("pt2")
    out = {}
    for kind in ("static", "dynamic"):
        path = save(small_net(), root / f"{kind}.pt2", kind == "dynamic")
        with zipfile.ZipFile(path) as z:
            out[kind] = {n: z.read(n) for n in z.namelist()}
    return out


def write(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def member(members: dict[str, bytes], suffix: str) -> str:
    return next(n for n in members if n.endswith(suffix))


def edit_json(members: dict[str, bytes], suffix: str, change) -> dict[str, bytes]:
    name = member(members, suffix)
    doc = json.loads(members[name])
    change(doc)
    return {**members, name: json.dumps(doc).encode()}


class Payload:
    """Unpickling it runs ``exec`` of its code."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


def touch(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('ran')"


# --- crafted archives ------------------------------------------------------------------------------


def with_opaque_constant(members: dict[str, bytes], marker: Path) -> dict[str, bytes]:
    """An ``opaque_obj_0`` constant: torch reads it with a plain pickle.loads, whatever TORCH_FORCE_WEIGHTS_ONLY_LOAD says."""

    def add(doc):
        doc["config"]["evil"] = {
            "path_name": "opaque_obj_0",
            "is_param": False,
            "use_pickle": True,
            "tensor_meta": None,
        }

    out = edit_json(members, "_constants_config.json", add)
    root = member(members, "archive_format").split("/")[0]
    return {**out, f"{root}/data/constants/opaque_obj_0": pickle.dumps(Payload(touch(marker)))}


def with_expr(members: dict[str, bytes], payload) -> dict[str, bytes]:
    """The first size expression of the program replaced by ``payload(honest expression)``."""
    name = member(members, "models/model.json")
    text = members[name].decode()
    honest = re.search(r'"expr_str": ("(?:[^"\\]|\\.)*")', text)[1]
    return {**members, name: text.replace(honest, json.dumps(payload(json.loads(honest))), 1).encode()}


def expr_payload(marker: Path):
    """sympify evaluates the string: this runs exec, then answers the honest expression."""
    return lambda honest: f"Symbol.__new__.__globals__['__builtins__']['exec']({touch(marker)!r}) or {honest}"


def with_defaultdict_spec(members: dict[str, bytes], module: str) -> dict[str, bytes]:
    """An in_spec with a defaultdict node: pytree imports its ``default_factory_module``."""
    spec = json.loads(torch.utils._pytree.treespec_dumps(torch.utils._pytree.tree_structure((1, defaultdict(list)))))
    node = spec[1]["children_spec"][1]
    node["context"] |= {"default_factory_module": module, "default_factory_name": "factory"}
    return edit_json(members, "models/model.json",
                     lambda d: d["graph_module"]["module_call_graph"][0]["signature"].update(in_spec=json.dumps(spec)))  # fmt: skip


def run_whiten(capsys, path: Path) -> tuple[int, str]:
    code = cli(["whiten", str(path), "--models", str(path.parent / "no-models")])
    err = capsys.readouterr().err
    return code, err


# --- tests -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_malicious_archives_run_code_in_torch_and_nothing_in_kennen(honest, tmp_path, capsys):
    """Each payload is live (plain torch.export.load runs it, even weights-only forced); kennen refuses it, runs nothing."""
    (tmp_path / "evil_factory.py").write_text(f"{touch(tmp_path / 'marker_spec')}\nfactory = list\n")
    files = {
        "marker_pickle": write(
            tmp_path / "pickle.pt2", with_opaque_constant(honest["static"], tmp_path / "marker_pickle")
        ),
        "marker_expr": write(
            tmp_path / "expr.pt2", with_expr(honest["dynamic"], expr_payload(tmp_path / "marker_expr"))
        ),
        "marker_spec": write(tmp_path / "spec.pt2", with_defaultdict_spec(honest["static"], "evil_factory")),
    }
    load_all = textwrap.dedent(
        """
        import sys, torch
        for f in sys.argv[1:]:
            try:
                torch.export.load(f)
            except Exception as e:
                print(f, type(e).__name__)
        """
    )
    env = {**os.environ, "TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1"}
    subprocess.run([sys.executable, "-c", load_all, *map(str, files.values())], cwd=tmp_path, env=env, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    for marker in files:
        assert (tmp_path / marker).exists(), f"{marker}: the payload did not run, so the test would prove nothing"
        (tmp_path / marker).unlink()
    sys.path.insert(0, str(tmp_path))  # evil_factory importable here too: a refusal must not depend on it missing
    try:
        for marker, path in files.items():
            code, err = run_whiten(capsys, path)
            assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
            assert "refused" in err
            assert not (tmp_path / marker).exists()
    finally:
        sys.path.remove(str(tmp_path))
    assert "opaque_obj_0" in run_whiten(capsys, files["marker_pickle"])[1]
    assert "size expression" in run_whiten(capsys, files["marker_expr"])[1]
    assert "tree spec node 'collections.defaultdict'" in run_whiten(capsys, files["marker_spec"])[1]


def test_native_libraries_and_pickled_payloads_are_refused_by_name(honest, tmp_path):
    members = honest["static"]
    root = member(members, "archive_format").split("/")[0]
    evil = Payload(touch(tmp_path / "marker"))

    def pickled_weight(doc):
        doc["config"][next(iter(doc["config"]))]["use_pickle"] = True

    def truthy_string(doc):
        doc["config"][next(iter(doc["config"]))]["use_pickle"] = "false"  # truthy: torch would unpickle

    buf = io.BytesIO()
    torch.save(evil, buf)
    cases = {
        "native code": {**members, f"{root}/data/aotinductor/model/model.so": b"\x7fELF"},
        "shared library": {**members, f"{root}/extra/helper.so": b"\x7fELF"},
        "use_pickle": edit_json(members, "_weights_config.json", pickled_weight),
        "use_pickle set": edit_json(members, "_weights_config.json", truthy_string),
        "legacy pickled payload": {**members, f"{root}/data/weights/model.pt": buf.getvalue()},
        "outside the archive's folder": {**members, "version": b"0"},
        "not loadable weights-only": {**members, member(members, "sample_inputs/model.pt"): buf.getvalue()},
        "not a member of": {**members, f"{root}/data/mtia/kernel.bin": b"?"},
    }
    for message, contents in cases.items():
        path = write(tmp_path / "box.pt2", contents)
        with pytest.raises(KennenError, match=message) as e:
            load_target(str(path))
        assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "marker").exists()


def test_operators_outside_torchs_tensor_operators_are_refused(honest, tmp_path):
    def retarget(target):
        def change(doc):
            doc["graph_module"]["graph"]["nodes"][0]["target"] = target

        return change

    for target, message in (
        ("torch.ops.load_library", "custom operator torch.ops.load_library needs its author's library"),
        ("torch.ops.my_lib.conv.default", "custom operator torch.ops.my_lib.conv.default"),
        ("torch.ops.aten.from_file.default", "not among the tensor operators"),
        ("torch.ops.aten.__class__.x", "custom operator"),
        ("#mylib:op", "custom operator"),
    ):
        path = write(tmp_path / "op.pt2", edit_json(honest["static"], "models/model.json", retarget(target)))
        with pytest.raises(KennenError, match=message):
            load_target(str(path))


@pytest.mark.parametrize(
    "expr",
    [SYMBOL, "Mul(Integer(2), Symbol('s74', positive=True, integer=True))", "s0 + 2*u3 - FloorDiv(s0, 2) % 7",
     "Max(1, Min(s1, 1024))", "And(Ge(s0, 1), Le(s0, 1024))", "CeilDiv(zf1, 3)", "Eq(s0, 4)"],
)  # fmt: skip
def test_size_expressions_of_the_grammar_pass(expr):
    pt2._check_expr(expr, "m")


@pytest.mark.parametrize(
    "expr",
    ["__import__('os')", "Symbol.__new__", "s0.__class__", "Integer(2)**Integer(99)", "PowByNatural(s0, 99)",
     "Symbol('os')", "exec(s0)", "lambda: 1", "s0[0]", 'Symbol("s0")', "s0 if s0 else 1", "Integer1", "ｅｘｅｃ(1)",
     "Symbol('s0', positive = True)", "1e9"],
)  # fmt: skip
def test_size_expressions_outside_the_grammar_are_refused(expr):
    with pytest.raises(KennenError, match="outside the grammar"):
        pt2._check_expr(expr, "m")


def test_garbage_truncated_and_ambiguous_files_are_one_line_errors(honest, tmp_path, capsys):
    data = save(small_net(), tmp_path / "good.pt2", False).read_bytes()
    cases = {
        "garbage.pt2": b"this is not a zip file" * 10,
        "empty.pt2": b"",
        "half.pt2": data[: len(data) // 2],
        "tail.pt2": data[:-10],
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        code, err = run_whiten(capsys, tmp_path / name)
        assert code == 2 and err.count("\n") == 1 and "not a torch.export archive (zip)" in err, (name, err)
    doubled = tmp_path / "doubled.pt2"
    with zipfile.ZipFile(doubled, "w") as z, pytest.warns(UserWarning, match="Duplicate"):
        for name, content in [*honest["static"].items(), (member(honest["static"], "models/model.json"), b"{}")]:
            z.writestr(name, content)
    code, err = run_whiten(capsys, doubled)
    assert code == 2 and err.count("\n") == 1 and "duplicate members" in err, err
    # Past the checks, torch fails: its traceback is held back, its first failure is the one line.
    bogus = edit_json(honest["static"], "models/model.json",
                      lambda d: d["graph_module"]["graph"]["nodes"][0].update(target="torch.ops.aten.conv2d.bogus"))  # fmt: skip
    code, err = run_whiten(capsys, write(tmp_path / "bogus.pt2", bogus))
    assert code == 2 and err.count("\n") == 1 and "cannot load the program (SerializeError: We failed to resolve" in err


@pytest.mark.parametrize("dynamic", [False, True])
def test_honest_exports_load_and_answer_like_the_module(tmp_path, monkeypatch, dynamic):
    # Set by the user: must neither break nor weaken the load.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    net = small_net()
    box = load_target(str(save(net, tmp_path / "box.pt2", dynamic)))
    for batch in (2, 7, 1) if dynamic else (2,):
        x = np.random.default_rng(batch).standard_normal((batch, 1, 28, 28)).astype(np.float32)
        with torch.no_grad():
            assert np.allclose(box(x), net(torch.from_numpy(x)).numpy(), atol=1e-5)
    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1" and "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


def test_the_archive_members_are_those_of_torch_export_save(honest):
    """The allowlist matches what this torch writes (names from torch/export/pt2_archive/constants.py)."""
    from torch.export.pt2_archive import constants as c

    for members in honest.values():
        names = {n.split("/", 1)[1] for n in members}
        assert {c.ARCHIVE_FORMAT_PATH, c.ARCHIVE_VERSION_PATH, c.MODELS_FILENAME_FORMAT.format("model"),
                c.WEIGHTS_CONFIG_FILENAME_FORMAT.format("model"), c.CONSTANTS_CONFIG_FILENAME_FORMAT.format("model"),
                c.SAMPLE_INPUTS_FILENAME_FORMAT.format("model")} <= names  # fmt: skip
        assert all(pt2._MEMBER.fullmatch(n) for n in names)
        pt2.check(write_bytes(members))
    assert c.OPAQUE_OBJ_FILENAME_PREFIX == "opaque_obj_" and c.CUSTOM_OBJ_FILENAME_PREFIX == "custom_obj_"
    assert c.AOTINDUCTOR_DIR == "data/aotinductor/" and c.TENSOR_CONSTANT_FILENAME_PREFIX == "tensor_"


def write_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()
