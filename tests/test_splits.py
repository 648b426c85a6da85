import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kennen.attributes import SAMPLED, size_of_split
from kennen.config import from_dict
from kennen.errors import KennenError
from kennen.splits import PAPER_E_SPLITS, SplitParams, all_splits, random_split


def _boxes():
    """Boxes over a small grid of configurations, two seeds each plus their ensemble."""
    boxes = []
    grid = itertools.product(
        (2, 3, 4), (2, 3, 4), ("sgd", "adam", "rmsprop"), (64, 128, 256), ("all", "half_0", "quarter_1")
    )
    for config, (n_conv, n_fc, alg, bs, split) in enumerate(grid):
        for kind in ("single", "single", "ensemble"):
            attrs = {a.key: a.values[0] for a in SAMPLED} | {
                "n_conv": n_conv,
                "n_fc": n_fc,
                "alg": alg,
                "bs": bs,
                "split": split,
            }
            boxes.append({"box": len(boxes), "kind": kind, "config": config, "size": size_of_split(split), **attrs})
    return boxes


BOXES = _boxes()


def test_r_split_is_disjoint_capped_and_keeps_configurations_together():
    params = SplitParams(n_train=300, n_test=100, test_fraction=0.2)
    r = random_split(BOXES, params, seed=1)
    assert not set(r["train"]) & set(r["test"])
    assert 297 < len(r["train"]) <= 300 and 100 <= len(r["test"]) < 103
    side = {b: "train" for b in r["train"]} | {b: "test" for b in r["test"]}
    for config in {b["config"] for b in BOXES}:
        assert len({side.get(b["box"]) for b in BOXES if b["config"] == config}) == 1  # one side, or left over
    assert random_split(BOXES, params, seed=1) == r != random_split(BOXES, params, seed=2)


def test_r_split_without_grouping_is_per_box():
    r = random_split(BOXES, SplitParams(n_train=50, n_test=30, group_by_config=False), seed=0)
    assert len(r["test"]) == 30 and len(r["train"]) == 50 and not set(r["train"]) & set(r["test"])


@pytest.mark.parametrize("name", list(PAPER_E_SPLITS))
def test_e_splits_hold_out_exactly_the_papers_values(name):
    splits = all_splits(BOXES, SplitParams(), seed=0)
    held = PAPER_E_SPLITS[name]
    train, test = ([BOXES[i] for i in splits[name][s]] for s in ("train", "test"))
    assert train and test and not set(splits[name]["train"]) & set(splits[name]["test"])
    for key, values in held.items():
        assert all(b[key] in values for b in test), key
        assert all(b[key] not in values for b in train), key
    if name == "e_alg_bs":
        assert {b["alg"] for b in train} == {"sgd", "adam"} and {b["bs"] for b in train} == {64, 128}
        assert {(b["alg"], b["bs"]) for b in test} == {("rmsprop", 256)}
    if name == "e_size":
        assert {b["size"] for b in train} == {"quarter"} and {b["size"] for b in test} == {"half", "all"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"extrapolation": {"e_x": {"act": ["swish"]}}},
            "splits.extrapolation.e_x.act: value 'swish' is outside Table 1",
        ),
        ({"extrapolation": {"e_x": {"pool": [True, False]}}}, "splits.extrapolation.e_x.pool: holds out every value"),
        ({"test_fraction": 1.5}, "splits.test_fraction: must be within"),
    ],
)
def test_bad_split_params(data, message):
    with pytest.raises(KennenError, match=message):
        from_dict(SplitParams, data, "splits")


def test_split_files_round_trip_and_missing_file(tmp_path):
    from kennen.io import write_json
    from kennen.splits import read_split

    write_json(tmp_path / "r.json", {"train": [3, 1], "test": [2]})
    assert read_split(tmp_path, "r") == {"train": [3, 1], "test": [2]}
    with pytest.raises(KennenError, match="e_conv.json: file not found"):
        read_split(tmp_path, "e_conv")


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 15), min_size=5, max_size=60), k=st.integers(2, 5), seed=st.integers(0, 999))
def test_folds_partition_the_boxes_and_never_split_a_configuration(sizes, k, seed):
    from kennen.splits import config_folds, fold_split

    configs = [c for c, n in enumerate(sizes) for _ in range(n)]
    boxes = [{"box": i, "config": c} for i, c in enumerate(configs)]
    if len(sizes) < k:
        return
    folds = config_folds(boxes, k, seed)
    assert sorted(b for f in folds for b in f) == list(range(len(boxes)))
    owner = {}
    for f, fold in enumerate(folds):
        for b in fold:
            assert owner.setdefault(boxes[b]["config"], f) == f  # a configuration's boxes share a fold
    sizes_f = [len(f) for f in folds]
    assert max(sizes_f) - min(sizes_f) <= max(sizes)  # balanced up to one configuration
    for f in range(k):
        split = fold_split(folds, f)
        assert not {boxes[b]["config"] for b in split["train"]} & {boxes[b]["config"] for b in split["test"]}
    assert config_folds(boxes, k, seed) == folds  # seeded


def test_read_folds_names_the_file_and_the_problem(tmp_path):
    import json

    from kennen.errors import KennenError
    from kennen.splits import read_folds

    boxes = [{"box": i, "config": i // 2} for i in range(6)]
    cases = {
        '{"folds": [[0, 1], [2, 3], [4, 5]]}': None,
        '{"folds": [[0, 1], [2, 3]]}': "box 4 is in no fold",
        '{"folds": [[0, 2], [1, 3], [4, 5]]}': "configuration 0 is in folds 0 and 1",
        '{"folds": [[0, 1], [1, 2, 3], [4, 5]]}': "box 1 is in folds 0 and 1",
        '{"folds": [[0, 1, 9], [2, 3], [4, 5]]}': "box 9 of fold 0 is not in the boxes table",
        '{"folds": [[0, 1]]}': "not a list of at least two lists",
        '{"k": 3}': "no key 'folds'",
    }
    for text, error in cases.items():
        (tmp_path / "folds.json").write_text(text)
        if error is None:
            assert read_folds(tmp_path, boxes) == json.loads(text)["folds"]
        else:
            with pytest.raises(KennenError, match=f"folds.json: .*{error}"):
                read_folds(tmp_path, boxes)


def test_the_splits_stage_refuses_an_out_dir_that_is_a_file_in_one_line(tmp_path, capfd):
    from stages import splits as splits_stage

    (tmp_path / "taken").write_text("")
    capfd.readouterr()
    rc = splits_stage.main(["--boxes", str(tmp_path / "boxes.csv"), "--out-dir", str(tmp_path / "taken")])
    assert rc == 2
    assert capfd.readouterr().err == f"error: {tmp_path / 'taken'}: is a file; give a folder for the outputs\n"


@pytest.mark.parametrize("below", ["a-file/out.json", "a-file/deeper/out.json"])
def test_an_output_under_a_file_is_one_kennen_error(tmp_path, below):
    from kennen.io import write_json

    (tmp_path / "a-file").write_text("")
    with pytest.raises(KennenError, match="a-file is a file, not a folder; give an output path under a folder"):
        write_json(tmp_path / below, {})
