"""Input schemas (kennen/schemas.py): every corrupt table or JSON input is exit 2, one line, no output touched.

A tiny valid zoo (4 models in 2 shards, 2 ensembles, 6 black boxes) is built once with the
library's own writers and stages; each test copies it, breaks one input, runs a stage's
``main`` and checks the exit code, stderr and every output of that stage.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kennen import schemas
from kennen.attributes import n_par_class, parse_value
from kennen.errors import KennenError
from kennen.io import write_csv
from kennen.queries import box_table, save_outputs
from kennen.schemas import BOX_COLUMNS
from kennen.zoo.store import SAMPLE_COLUMNS, read_table, write_shard
from kennen.zoo.train import TrainResult
from stages import defences, ensembles, prune, splits, zoo_report, zoo_table
from tests.conftest import tiny_params

# Two configurations of two seeds each: models 0, 1 (shard 0) and 2, 3 (shard 1).
CONFIGS = {
    5: {"act": "relu", "drop": True, "pool": True, "ks": 5, "n_conv": 2, "n_fc": 2, "alg": "adam", "bs": 64},
    6: {"act": "tanh", "drop": False, "pool": True, "ks": 3, "n_conv": 3, "n_fc": 4, "alg": "sgd", "bs": 128},
}
N_PARAMS = {5: 20_000, 6: 40_000}  # n_par 14 and 15


def _sample_rows() -> list[dict]:
    rows = []
    for model_id, config in enumerate((5, 5, 6, 6)):
        split = "half_1" if config == 5 else "quarter_2"
        rows.append(
            {
                "model_id": model_id,
                "shard": model_id // 2,
                "config": config,
                "seed": 10 + model_id,
                "torch_seed": 1000 + model_id,
                **CONFIGS[config],
                "n_par": n_par_class(N_PARAMS[config]),
                "ens": False,
                "split": split,
                "size": split.split("_")[0],
                "n_params": N_PARAMS[config],
            }
        )
    return rows


def _build(root: Path) -> None:
    """A valid tiny zoo under ``root``, written by the library's writers and the stages themselves."""
    (root / "params.yaml").write_text(
        yaml.safe_dump(tiny_params(root / "idx", splits={"folds": 2}))
    )  # 2 configurations
    sample = _sample_rows()
    write_csv(root / "sample.csv", sample, SAMPLE_COLUMNS)
    for shard in (0, 1):
        results = [
            TrainResult(
                r["model_id"], {"w": np.full(3, r["model_id"], np.float32)}, 99.0 - r["model_id"], 0.1, 1.0, False
            )
            for r in sample
            if r["shard"] == shard
        ]
        write_shard(root / "shards", shard, results)
    for stage, args in _RUNS[:3]:
        assert stage.main(args(root)) == 0
    models, kept = read_table(root / "models.csv"), schemas.read_kept(root / "kept.json")
    boxes = box_table(models, kept, read_table(root / "ensembles.csv"))
    write_csv(root / "queries" / "boxes.csv", boxes, BOX_COLUMNS)
    uniform = np.full((len(boxes), 5, 10), -np.log(10), np.float32)  # every box: probability 0.1 for each digit
    save_outputs(root / "queries" / "outputs.npz", uniform, np.arange(5))
    assert splits.main(_splits_args(root)) == 0


def _p(root: Path) -> list[str]:
    return ["--params", str(root / "params.yaml")]


def _zoo_table_args(root: Path) -> list[str]:
    return [*_p(root), "--sample", f"{root}/sample.csv", "--shards", f"{root}/shards", "--out", f"{root}/models.csv"]


def _prune_args(root: Path) -> list[str]:
    return [*_p(root), "--models", f"{root}/models.csv", "--out", f"{root}/kept.json"]


def _ensembles_args(root: Path) -> list[str]:
    return [
        *_p(root),
        "--models",
        f"{root}/models.csv",
        "--kept",
        f"{root}/kept.json",
        "--out",
        f"{root}/ensembles.csv",
    ]


def _zoo_report_args(root: Path) -> list[str]:
    files = ["--models", f"{root}/models.csv", "--kept", f"{root}/kept.json", "--ensembles", f"{root}/ensembles.csv"]
    out = ["--metrics", f"{root}/report/zoo.json", "--plots", f"{root}/report/plots", "--figures", f"{root}/report/fig"]
    return [*_p(root), *files, *out]


def _splits_args(root: Path) -> list[str]:
    return [*_p(root), "--boxes", f"{root}/queries/boxes.csv", "--out-dir", f"{root}/splits"]


def _defences_args(root: Path) -> list[str]:
    files = ["--data", f"{root}/mnist.npz", "--outputs", f"{root}/queries/outputs.npz", "--kennen-i", f"{root}/ki.json"]
    files += ["--boxes", f"{root}/queries/boxes.csv", "--splits", f"{root}/splits"]
    files += ["--models", f"{root}/models.csv", "--shards", f"{root}/shards"]
    out = ["--metrics", f"{root}/def/d.json", "--plots", f"{root}/def/plots", "--figures", f"{root}/def/fig"]
    return [*_p(root), *files, *out]


_RUNS: list[tuple[object, Callable[[Path], list[str]]]] = [
    (zoo_table, _zoo_table_args),
    (prune, _prune_args),
    (ensembles, _ensembles_args),
]
# Each case: (stage, its arguments, the input file to break, the stage's outputs).
CASES = {
    "sample": (zoo_table, _zoo_table_args, "sample.csv", ["models.csv"]),
    "shard": (zoo_table, _zoo_table_args, "shards/shard-0.csv", ["models.csv"]),
    "models": (prune, _prune_args, "models.csv", ["kept.json"]),
    "models-ensembles": (ensembles, _ensembles_args, "models.csv", ["ensembles.csv"]),
    "kept": (ensembles, _ensembles_args, "kept.json", ["ensembles.csv"]),
    "ensembles": (zoo_report, _zoo_report_args, "ensembles.csv", ["report"]),
    "boxes": (splits, _splits_args, "queries/boxes.csv", ["splits"]),
    "split": (defences, _defences_args, "splits/folds.json", ["def"]),
}
# Inputs broken only by the explicit cases below.
MORE_CASES = {"kept-report": (zoo_report, _zoo_report_args, "kept.json", ["report"])}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("zoo")
    _build(root)
    return root


def _snapshot(root: Path, outputs: list[str]) -> dict[str, bytes | None]:
    """Every file under each output (a file or a folder) by path, its bytes; None for an absent output."""
    out: dict[str, bytes | None] = {}
    for name in outputs:
        path = root / name
        if path.is_dir():
            out |= {str(f.relative_to(root)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}
        else:
            out[name] = path.read_bytes() if path.exists() else None
    return out


def _run_broken(zoo: Path, case: str, corrupt: Callable[[bytes], bytes], capsys) -> str:
    """Copy the zoo, break the case's input with ``corrupt``, run the stage; assert exit 2, one line, no output touched."""
    stage, args, name, outputs = (CASES | MORE_CASES)[case]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "zoo"
        shutil.copytree(zoo, root)
        path = root / name
        path.write_bytes(corrupt(path.read_bytes()))
        before = _snapshot(root, outputs)
        capsys.readouterr()
        code = stage.main(args(root))
        err = capsys.readouterr().err
        assert code == 2, err
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert Path(name).name in lines[0]  # the message names the broken file, not a later symptom
        assert _snapshot(root, outputs) == before
        return lines[0]


# --- corruptions ---------------------------------------------------------------------------------------------

# Text that no column accepts: "~" is in no Table 1 value, number or id; the others are the probes' values.
GARBAGE_CELL = st.one_of(st.sampled_from(["", "swish", "yes", "-1", "1.5e3x", "inf"]), st.text().map("~".__add__))
# JSON values that no key of a kept-ids or split file accepts.
GARBAGE_JSON = st.sampled_from(["123", "swish", None, True, -1, {"a": 1}, [-1], ["1"], [True], [1.5], [1, 1]])


def _truncate(data: bytes, at: int) -> bytes:
    """Cut the file inside a line (a cut at a line's end would leave a valid, shorter table)."""
    text = data.decode()
    cuts = [i for i in range(1, len(text.rstrip())) if text[i - 1] != "\n" and text[i] != "\n"]
    return text[: cuts[at % len(cuts)]].encode()


def _csv_drop_column(data: bytes, at: int) -> bytes:
    rows = list(csv.reader(io.StringIO(data.decode())))
    i = at % len(rows[0])
    return _csv_bytes([r[:i] + r[i + 1 :] for r in rows])


def _csv_flip(data: bytes, at: int, value: str) -> bytes:
    rows = list(csv.reader(io.StringIO(data.decode())))
    cells = [(r, c) for r in range(1, len(rows)) for c in range(len(rows[r]))]
    r, c = cells[at % len(cells)]
    rows[r][c] = value
    return _csv_bytes(rows)


def _csv_bytes(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode()


def _json_drop_key(data: bytes, at: int) -> bytes:
    obj = json.loads(data)
    del obj[sorted(obj)[at % len(obj)]]
    return json.dumps(obj).encode()


def _json_flip(data: bytes, at: int, value: object) -> bytes:
    obj = json.loads(data)
    obj[sorted(obj)[at % len(obj)]] = value
    return json.dumps(obj).encode()


def _bad_byte(data: bytes, at: int) -> bytes:
    i = at % len(data)
    return data[:i] + b"\xff" + data[i + 1 :]


def corruptions(json_file: bool) -> st.SearchStrategy[Callable[[bytes], bytes]]:
    """Random ways to break a file: truncate, drop a column or key, flip a value, empty it, wrong encoding."""
    at = st.integers(0, 10_000)
    drop, flip, garbage = (
        (_json_drop_key, _json_flip, GARBAGE_JSON) if json_file else (_csv_drop_column, _csv_flip, GARBAGE_CELL)
    )
    return st.one_of(
        at.map(lambda i: lambda d: _truncate(d, i)),
        at.map(lambda i: lambda d: drop(d, i)),
        st.tuples(at, garbage).map(lambda a: lambda d: flip(d, a[0], a[1])),
        st.just(lambda d: b""),
        st.just(lambda d: d.decode().encode("utf-16")),
        at.map(lambda i: lambda d: _bad_byte(d, i)),
        st.binary(min_size=1, max_size=200).map(lambda b: lambda d: b),
    )


FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("case", list(CASES))
def test_any_corruption_is_one_line_exit_2_and_no_output_touched(zoo, case, capsys):
    @FUZZ
    @given(corrupt=corruptions(CASES[case][2].endswith(".json")))
    def check(corrupt):
        _run_broken(zoo, case, corrupt, capsys)

    check()


# --- hostile inputs, one case each --------------------------------------------------------------------------


def _edit_csv(column: str, value: str | None, row: int = 1) -> Callable[[bytes], bytes]:
    """Set ``column`` of data row ``row`` to ``value``, or drop the column (value None)."""

    def edit(data: bytes) -> bytes:
        rows = list(csv.reader(io.StringIO(data.decode())))
        i = rows[0].index(column)
        if value is None:
            return _csv_bytes([r[:i] + r[i + 1 :] for r in rows])
        rows[row][i] = value
        return _csv_bytes(rows)

    return edit


@pytest.mark.parametrize(
    ("case", "corrupt", "message"),
    [
        ("sample", _edit_csv("act", None), r"sample.csv: line 1: no column 'act'"),
        ("models", _edit_csv("act", "swish", 2), r"models.csv: line 3, column act: 'swish' is not in Table 1"),
        ("models-ensembles", _edit_csv("act", "swish"), r"models.csv: line 2, column act: 'swish'"),
        ("models", _edit_csv("drop", "yes"), r"models.csv: line 2, column drop: 'yes' is not in Table 1 \(0, 1\)"),
        ("models", _edit_csv("test_acc", None), r"models.csv: line 1: no column 'test_acc'"),
        ("models", _edit_csv("diverged", None), r"models.csv: line 1: no column 'diverged'"),
        ("models-ensembles", _edit_csv("config", None), r"models.csv: line 1: no column 'config'"),
        ("models-ensembles", _edit_csv("test_acc", None), r"models.csv: line 1: no column 'test_acc'"),
        ("boxes", _edit_csv("n_conv", None), r"boxes.csv: line 1: no column 'n_conv'"),
        ("kept", lambda d: _json_flip(d, 1, "123"), r"kept.json: key 'model_ids': '123' is not a list of ids"),
        ("sample", lambda d: b"", r"sample.csv: empty file"),
        ("sample", lambda d: d.splitlines(keepends=True)[0], r"sample.csv: no rows"),
        ("sample", lambda d: d.decode().encode("utf-16"), r"sample.csv: line 1: not UTF-8 text \(byte 0xff\)"),
    ],
)
def test_issue_cases(zoo, case, corrupt, message, capsys):
    line = _run_broken(zoo, case, corrupt, capsys)
    assert re.search(message, line), line


@pytest.mark.parametrize("case", ["kept", "kept-report"])
def test_kept_ids_missing_from_the_models_table(zoo, case, capsys):
    """Kept ids missing from models.csv were a KeyError in ensembles; now exit 2 naming the id."""
    line = _run_broken(zoo, case, lambda d: _json_flip(d, 1, [0, 1, 9]), capsys)
    assert re.search(r"kept.json: model 9 is not in \S*models.csv", line), line


@pytest.mark.parametrize(
    ("case", "corrupt", "message"),
    [
        # a cut inside the last field leaves a number: n_par no longer matches it
        ("sample", lambda d: d.rstrip()[:-2], r"sample.csv: line 5, column n_par: 15 does not match n_params 400"),
        ("models", _edit_csv("model_id", "0", 2), r"models.csv: line 3, column model_id: 0 appears twice"),
        ("models", _edit_csv("ens", "1"), r"models.csv: line 2, column ens: 1, expected 0 in every row"),
        ("ensembles", _edit_csv("ens", "0"), r"ensembles.csv: line 2, column ens: 0, expected 1 in every row"),
        ("sample", _edit_csv("size", "all"), r"sample.csv: line 2, column size: 'all' does not match split 'half_1'"),
        ("boxes", _edit_csv("box", "4", 2), r"boxes.csv: line 3, column box: 4, expected 1"),
        ("boxes", _edit_csv("kind", "ensemble"), r"boxes.csv: line 2, column ens: 0 does not match kind 'ensemble'"),
        ("split", lambda d: _json_flip(d, 0, [[0, 1, 2], [0, 3]]), r"folds.json: box 0 is in folds 0 and 1"),
    ],
)
def test_row_checks(zoo, case, corrupt, message, capsys):
    """Unique ids, fixed and derived values: what catches a table cut at a row's last digit, or edited by hand."""
    line = _run_broken(zoo, case, corrupt, capsys)
    assert re.search(message, line), line


def test_split_boxes_must_exist(zoo, capsys):
    line = _run_broken(zoo, "split", lambda d: _json_flip(d, 0, [[0, 1, 99], [2, 3]]), capsys)
    assert re.search(r"folds.json: box 99 of fold 0 is not in the boxes table", line), line


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (_edit_csv("members", "0;9"), r"ensembles.csv: line 2, column members: model 9 is not in \S*kept.json"),
        (_edit_csv("members", "0;2"), r"ensembles.csv: line 2, column config: 5, but member 2 has config 6 in"),
        (_edit_csv("n_members", "3"), r"ensembles.csv: line 2, column n_members: 3, members lists 2"),
    ],
)
def test_ensembles_agree_with_the_zoo(zoo, corrupt, message, capsys):
    line = _run_broken(zoo, "ensembles", corrupt, capsys)
    assert re.search(message, line), line


def test_valid_zoo_reads_back_typed(zoo):
    models = read_table(zoo / "models.csv", schemas.MODELS)
    assert [m["model_id"] for m in models] == [0, 1, 2, 3]
    assert models[0]["drop"] is True and models[2]["drop"] is False and models[0]["ks"] == 5
    assert schemas.read_kept(zoo / "kept.json") == [0, 1, 2, 3]
    assert [e["members"] for e in read_table(zoo / "ensembles.csv")] == ["0;1", "2;3"]
    assert len(read_table(zoo / "queries" / "boxes.csv")) == 6


def test_byte_order_mark_and_old_columns_are_accepted(zoo, tmp_path):
    """Spreadsheets write a UTF-8 BOM; a column the pipeline no longer writes is dropped, not an error."""
    text = (zoo / "models.csv").read_text()
    rows = list(csv.reader(io.StringIO(text)))
    rows = [[*r, "extra" if i == 0 else "1.5"] for i, r in enumerate(rows)]
    (tmp_path / "models.csv").write_bytes(b"\xef\xbb\xbf" + _csv_bytes(rows))
    assert read_table(tmp_path / "models.csv") == read_table(zoo / "models.csv")


@pytest.mark.parametrize("text", ["1", "True", "true", "0", "False", "false"])
def test_parse_value_reads_flags(text):
    assert parse_value("drop", text) is (text in ("1", "True", "true"))


@pytest.mark.parametrize(("key", "text"), [("drop", "yes"), ("drop", ""), ("act", "swish"), ("ks", "4"), ("ks", "x")])
def test_parse_value_rejects_values_outside_table_1(key, text):
    with pytest.raises(ValueError):
        parse_value(key, text)


def test_unknown_table_name_is_a_one_line_error(tmp_path):
    (tmp_path / "zoo.csv").write_text("a,b\n1,2\n")
    with pytest.raises(KennenError, match="zoo.csv: not a table name the pipeline writes"):
        read_table(tmp_path / "zoo.csv")


def test_shard_file_names_hold_samples_or_outcomes(zoo, tmp_path):
    """Per-shard sample tables and shard outcome tables are both shard-N.csv; the shard column tells them apart."""
    sample = [r for r in read_table(zoo / "sample.csv") if r["shard"] == 1]
    write_csv(tmp_path / "shard-1.csv", sample, SAMPLE_COLUMNS)
    assert read_table(tmp_path / "shard-1.csv") == sample
    assert [r["model_id"] for r in read_table(zoo / "shards" / "shard-1.csv")] == [2, 3]
    (tmp_path / "shard-1.csv").write_text((zoo / "shards" / "shard-1.csv").read_text().replace("diverged", "div"))
    with pytest.raises(KennenError, match=r"shard-1.csv: line 1: no column 'diverged' \(every shard outcome table"):
        read_table(tmp_path / "shard-1.csv")


@pytest.mark.parametrize(
    "outputs, query_index, n_boxes, needle",
    [
        (np.zeros((3, 4, 10), np.float64), np.arange(4), None, "outputs must be float32 [boxes, queries, 10]"),
        (np.zeros((3, 4, 9), np.float32), np.arange(4), None, "outputs must be float32 [boxes, queries, 10]"),
        (np.zeros((3, 4, 10), np.float32), np.arange(5), None, "query_index must be 4 integers"),
        (np.zeros((3, 4, 10), np.float32), np.arange(4.0), None, "query_index must be 4 integers"),
        (np.zeros((3, 4, 10), np.float32), np.arange(4), 2, "3 rows of outputs for 2 boxes"),
    ],
)
def test_outputs_archive_shapes_and_rows_are_checked(tmp_path, outputs, query_index, n_boxes, needle):
    from kennen.io import save_npz
    from kennen.queries import load_outputs

    path = tmp_path / "outputs.npz"
    save_npz(path, outputs=outputs, query_index=query_index)
    boxes = None if n_boxes is None else [{"box": i} for i in range(n_boxes)]
    with pytest.raises(KennenError, match=re.escape(needle)) as err:
        load_outputs(path, boxes)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
