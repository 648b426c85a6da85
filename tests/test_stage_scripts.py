"""Every stage script is thin (the project's style rule 1): argument parsing plus one call into ``kennen``."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

from tests.conftest import REPO

MAX_LINES = 40
SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
SCRIPTS = sorted(p for p in (REPO / "stages").glob("*.py") if p.stem != "__init__")


def code_lines(source: str) -> int:
    """Lines holding code: not blank, not only a comment, not the module docstring."""
    tree = ast.parse(source)
    first = tree.body[0] if tree.body else None
    doc = set()
    if ast.get_docstring(tree) is not None:
        doc = set(range(first.lineno, first.end_lineno + 1))
    lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in SKIP:
            lines |= set(range(tok.start[0], tok.end[0] + 1)) - doc
    return len(lines)


def test_code_lines_skip_docstring_comments_and_blanks():
    assert code_lines('"""Doc.\n\nMore."""\n\n# note\nx = (\n    1,\n)  # why\n') == 3


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_stage_script_is_at_most_40_lines_of_code(script: Path):
    n = code_lines(script.read_text())
    assert n <= MAX_LINES, f"{script.name}: {n} lines of code; move the logic into the kennen package"
