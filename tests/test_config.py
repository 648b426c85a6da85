from dataclasses import dataclass

import pytest

from kennen.config import base_seed, from_dict, load_params, section
from kennen.data import DataParams
from kennen.errors import KennenError
from kennen.zoo.train import TrainParams


@dataclass(frozen=True)
class _Inner:
    n: int


@dataclass(frozen=True)
class _Outer:
    a: int
    rate: float = 1.0
    items: tuple[_Inner, ...] = ()


def test_nested_sections_are_typed():
    obj = from_dict(_Outer, {"a": 1, "rate": 2, "items": [{"n": 3}]}, "s")
    assert obj == _Outer(1, 2.0, (_Inner(3),))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"a": 1, "b": 2}, "s.b: unknown key (expected one of: a, rate, items)"),
        ({}, "s.a: missing key"),
        ({"a": True}, "s.a: expected int, got True"),
        ({"a": "1"}, "s.a: expected int, got '1'"),
        ({"a": 1, "items": [{"n": 1.5}]}, "s.items[0].n: expected int, got 1.5"),
        ({"a": 1, "items": {"n": 1}}, "s.items: expected a list"),
    ],
)
def test_errors_name_the_key(data, message):
    with pytest.raises(KennenError) as e:
        from_dict(_Outer, data, "s")
    assert str(e.value).startswith(message)


def test_repository_params_load():
    params = load_params("params.yaml")
    assert base_seed(params) >= 0
    assert section(DataParams, params, "data").source == "wheel"
    assert section(TrainParams, params, "train_zoo").epochs >= 1


def test_bad_params_files(tmp_path):
    with pytest.raises(KennenError, match="params file not found"):
        load_params(tmp_path / "none.yaml")
    (tmp_path / "p.yaml").write_text("a: [1,\n")
    with pytest.raises(KennenError, match="not valid YAML"):
        load_params(tmp_path / "p.yaml")
    with pytest.raises(KennenError, match="seed: expected a non-negative int"):
        base_seed({"seed": -1})
    with pytest.raises(KennenError, match="data.source: expected 'wheel' or 'idx'"):
        section(DataParams, {"data": {"source": "http"}}, "data")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("seed: 1\nsmaple_zoo: {n_models: 3}\n", r"'smaple_zoo': unknown top-level key"),
        (
            "seed: 1\nprune:\n  min_acc: 90\n  min_acc: 50\n",
            r"line 4, column 3: key 'min_acc' given twice \(lines 3 and 4\)",
        ),
        ("seed: 1\nseed: 2\n", r"key 'seed' given twice \(lines 1 and 2\)"),
        ("seed: 1\nprune: {min_acc: [1,\n", r"not valid YAML \(line 3, column 1: "),
        ("seed: 1\n  bad indent: 2\n", r"not valid YAML \(line 2, column \d+: "),
        ("- 1\n- 2\n", "expected a mapping of sections"),
    ],
)
def test_malformed_params_files_are_one_line_errors_with_where(tmp_path, content, message):
    path = tmp_path / "params.yaml"
    path.write_text(content)
    with pytest.raises(KennenError, match=message) as e:
        load_params(path)
    assert "\n" not in str(e.value) and str(e.value).startswith(str(path))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("seed: 1\n", encoding="utf-16"), "not UTF-8 text"),
        (lambda p: p.write_bytes(b"seed: 1\n\x00\x01\x02"), "not a text file"),
        (lambda p: p.write_bytes(bytes(range(256))), "not UTF-8 text"),
        (lambda p: p.mkdir(), "is a folder, not a params file"),
    ],
)
def test_unreadable_params_files_are_one_line_errors(tmp_path, make, message):
    path = tmp_path / "params.yaml"
    make(path)
    with pytest.raises(KennenError, match=message) as e:
        load_params(path)
    assert "\n" not in str(e.value)


def test_every_profile_has_only_known_sections():
    from kennen.config import SECTIONS

    for name in ("params.yaml", "profiles/paper.yaml", "profiles/quick.yaml"):
        assert set(load_params(name)) == set(SECTIONS), name  # every section present, none unknown


def test_paper_profile_is_valid_and_matches_the_paper():
    from kennen.zoo.ensembles import EnsembleParams
    from kennen.zoo.prune import PruneParams
    from kennen.zoo.sample import SampleParams

    default, paper = load_params("params.yaml"), load_params("profiles/paper.yaml")
    assert _keys(default) == _keys(paper)  # same knobs, only other values
    for params in (default, paper):
        sp = section(SampleParams, params, "sample_zoo")
        assert list(section(TrainParams, params, "train_zoo").shards) == list(range(sp.n_shards))
        section(EnsembleParams, params, "ensembles")
    sp, tp = section(SampleParams, paper, "sample_zoo"), section(TrainParams, paper, "train_zoo")
    assert (sp.n_models, sp.n_seeds, sp.groups, tp.epochs, tp.pool_size) == (10_000, 1000, (), 100, 60_000)
    assert section(PruneParams, paper, "prune").min_acc == 98


def _keys(tree, prefix=""):
    if not isinstance(tree, dict) or not tree:
        return {prefix}
    return set().union(*(_keys(v, f"{prefix}.{k}") for k, v in tree.items()))
