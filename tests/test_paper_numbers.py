"""The paper's numbers are written once, in ``kennen/paper.py``: no other module of ``kennen/`` or ``stages/`` spells one.

The numbers are taken from ``kennen/paper.py``'s own data: every figure with a decimal (Tables 2, 3 and 5,
the §7 family probe), the two the page derives from them (Table 4's diagonal mean, kennen-io − kennen-o), and
the zoo counts the paper's run produced (8,582 kept, 2,700 ensembles, 11,282 boxes). Table 4's whole
percentages and the protocol's round sizes (10,000 models, 5,000 / 1,000 boxes, 60,000 images) are left out:
two-digit integers and round thousands occur in code for reasons of their own, so a grep for them would only
find coincidences.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kennen import paper

ROOT = Path(__file__).resolve().parents[1]
# Coincidences that cannot be avoided, with why.
ALLOWED = {
    "100.0": "the percent scale (100.0 * hits / n) everywhere; Table 5's white-box rate happens to be 100.0",
}


def _floats(value) -> list[float]:
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats(v)]
    return [value] if isinstance(value, float) else []


def paper_numbers() -> set[str]:
    """Every decimal figure of ``kennen/paper.py`` as the page writes it (one decimal), and the zoo counts that
    are the paper's own results (pruned, ensembles, final), with a thousands separator or underscore."""
    data = [getattr(paper, name) for name in dir(paper) if name.isupper()]
    derived = [paper.table4_diagonal_mean(), paper.METHOD_MEANS["kennen-io"] - paper.METHOD_MEANS["kennen-o"]]
    counts = [paper.PAPER_ZOO[k] for k in ("n_kept", "n_ensembles", "n_final")]
    return {f"{f:.1f}" for f in [*(f for d in data for f in _floats(d)), *derived]} | {
        text for n in counts for text in (f"{n:,}", f"{n:_}")
    }


def _token(numbers: set[str]) -> re.Pattern[str]:
    # A whole token: no digit, letter, dot or minus sign before it ("-90.0" is another number), and no
    # further digits after it ("80.15", "80.1e3"); a full stop or comma after it ends a sentence.
    alternatives = "|".join(re.escape(n) for n in sorted(numbers, key=len, reverse=True))
    return re.compile(rf"(?<![\w.\-])({alternatives})(?![\w]|[.,]\d)")


def test_the_list_is_built_from_the_data():
    numbers = paper_numbers()
    assert {"80.1", "73.4", "52.7", "34.9", "92.1", "90.4", "94.8", "86.2", "86.4", "6.7", "8,582", "11_282"} <= numbers
    assert len(numbers) > 80


@pytest.mark.parametrize(
    ("line", "hit"),
    [
        ("the paper: kennen-io (80.1) > kennen-o", "80.1"),
        ("The paper: +6.7.", "6.7"),
        ("PAPER = {100: 90.4, 1000: 94.8}", "90.4"),
        ("FLOOR = -90.0", None),
        ("lr = 180.1", None),
        ("x = 80.15", None),
        ("v80.1", None),
    ],
)
def test_the_token_match(line: str, hit: str | None):
    m = _token({"80.1", "6.7", "90.4", "90.0"}).search(line)
    assert (m.group(1) if m else None) == hit


def test_no_paper_number_outside_the_data_module():
    pattern = _token(paper_numbers() - set(ALLOWED))
    files = [p for d in ("kennen", "stages") for p in sorted((ROOT / d).rglob("*.py"))]
    hits = [
        f"{path.relative_to(ROOT)}:{i}: {m.group(1)}"
        for path in files
        if path != ROOT / "kennen" / "paper.py"
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for m in pattern.finditer(line)
    ]
    assert not hits, "paper numbers outside kennen/paper.py (read them from there):\n" + "\n".join(hits)
