"""dvc.yaml is exact (style.md rule 5): each stage lists the modules its script really imports.

The imports are read statically (every ``import kennen...`` anywhere in a module, lazy
imports included) and followed transitively from ``stages/<name>.py``. Left out on
purpose, as the header of dvc.yaml says: params parsing, error messages and logging
(``kennen/config.py``, ``errors.py``, ``log.py``, ``stages/_common.py``), so that editing
them reruns nothing, and the packages' ``__init__.py`` files, which hold docstrings only
(checked below).

After changing imports, ``python -m tests.test_dvc_deps --fix`` rewrites the module lines of
every stage's deps in dvc.yaml (data deps and comments are kept).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
NOT_DEPS = {"kennen/config.py", "kennen/errors.py", "kennen/log.py", "stages/_common.py"}
CODE_ROOTS = ("kennen/", "stages/")


def _module_file(name: str) -> Path | None:
    """The file of a dotted module name inside the repo, or None (third-party, or a name in a module)."""
    base = REPO.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imports(path: Path) -> set[Path]:
    """Repo modules imported anywhere in ``path`` (``from pkg import sub`` counts ``pkg/sub.py``)."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in ("kennen", "stages") and (f := _module_file(name)) is not None:
                found.add(f)
    return found


def closure(script: Path) -> set[str]:
    """Repo-relative paths of every module ``script`` imports, transitively, minus NOT_DEPS and __init__ files."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo += _imports(f)
    rel = {f.relative_to(REPO).as_posix() for f in seen}
    return {p for p in rel if p not in NOT_DEPS and not p.endswith("__init__.py")}


def stages() -> dict[str, dict]:
    """Stage name -> its dvc.yaml definition (a foreach stage's ``do`` body)."""
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: body.get("do", body) for name, body in doc.items()}


def script_of(body: dict) -> Path:
    return REPO / (re.search(r"python -m (stages\.\w+)", body["cmd"]).group(1).replace(".", "/") + ".py")


def declared(body: dict) -> set[str]:
    return {d for d in body.get("deps", []) if d.startswith(CODE_ROOTS)}


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_deps_are_exactly_its_imports(name):
    body = stages()[name]
    want, have = closure(script_of(body)), declared(body)
    assert have == want, (
        f"{name}: missing {sorted(want - have)}, not imported {sorted(have - want)} "
        "(python -m tests.test_dvc_deps --fix)"
    )


def test_package_init_files_hold_no_code():
    # Left out of the deps above: they must not shape any output.
    for init in sorted(REPO.glob("kennen/**/__init__.py")):
        tree = ast.parse(init.read_text())
        body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        assert all(isinstance(n, ast.Assign) and n.targets[0].id == "__version__" for n in body), init


def fix() -> None:
    """Rewrite the code lines of every stage's deps in dvc.yaml; other lines are kept as they are."""
    lines = (REPO / "dvc.yaml").read_text().splitlines(keepends=True)
    bodies, out, stage = stages(), [], None
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := re.match(r"^  (\w+):\s*$", line):
            stage = m.group(1)
        out.append(line)
        i += 1
        if stage and re.match(r"^\s+deps:\s*$", line):
            indent = " " * (len(line) - len(line.lstrip()) + 2)
            script = script_of(bodies[stage]).relative_to(REPO).as_posix()
            want = sorted(closure(script_of(bodies[stage])) - {script})
            out += [f"{indent}- {p}\n" for p in [script, *want]]
            while i < len(lines) and lines[i].startswith(f"{indent}- "):
                if not lines[i][len(indent) + 2 :].startswith(CODE_ROOTS):
                    out.append(lines[i])
                i += 1
    (REPO / "dvc.yaml").write_text("".join(out))


if __name__ == "__main__" and sys.argv[1:] == ["--fix"]:
    fix()
