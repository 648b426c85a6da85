"""Hostile inputs (kennen/schemas.py, kennen/config.py): stored outputs, metamodel files, metrics JSON,
shard weights and params out of bounds are each one line naming the file or key, never a traceback."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kennen import schemas
from kennen.config import SEED_MAX, base_seed, load_params, section
from kennen.errors import KennenError
from kennen.imagenet.families import ProbeParams
from kennen.io import save_npz
from kennen.metamodel.kennen_i import KennenIParams
from kennen.metamodel.kennen_io import KennenIOParams
from kennen.metamodel.kennen_o import KennenOParams
from kennen.metamodel.sweep import SweepParams
from kennen.queries import load_outputs
from kennen.transfer.boxes import TransferParams
from kennen.zoo.sample import SampleParams
from kennen.zoo.train import TrainParams

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- outputs.npz ------------------------------------------------------------------------------------------------

# Four single models (ids 3, 5, 7, 9) and one ensemble of 5 and 7.
BOXES = [{"box": i, "kind": "single", "id": m, "members": str(m)} for i, m in enumerate((3, 5, 7, 9))]
BOXES.append({"box": 4, "kind": "ensemble", "id": 0, "members": "5;7"})


def _outputs(n_queries: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Valid outputs of BOXES: log-softmax rows, the ensemble the mean of its members'; distinct query ids."""
    logits = torch.from_numpy(np.random.default_rng(seed).normal(size=(4, n_queries, 10)) * 3)
    single = torch.log_softmax(logits, -1).float().numpy()
    outputs = np.concatenate([single, single[[1, 2]].mean(0, keepdims=True)])
    return outputs, np.arange(100, 100 + n_queries)


def _load(tmp_path: Path, outputs: np.ndarray, query_index: np.ndarray, boxes=BOXES) -> None:
    path = tmp_path / "outputs.npz"
    save_npz(path, outputs=outputs, query_index=query_index)
    load_outputs(path, boxes)


def _one_line(err: pytest.ExceptionInfo, *needles: str) -> str:
    text = str(err.value)
    assert "\n" not in text and "outputs.npz" in text, text
    for needle in needles:
        assert re.search(needle, text), text
    return text


def test_valid_outputs_load(tmp_path):
    _load(tmp_path, *_outputs())
    outputs, query_index = _outputs()
    save_npz(tmp_path / "o.npz", outputs=outputs, query_index=query_index)
    assert load_outputs(tmp_path / "o.npz")[0].shape == (5, 6, 10)  # no boxes table: rows only <= 0


@FAST
@given(pos=st.tuples(st.integers(0, 4), st.integers(0, 5), st.integers(0, 9)), value=st.sampled_from([np.nan, np.inf]))
def test_a_non_finite_value_anywhere_is_named(tmp_path, pos, value):
    outputs, query_index = _outputs()
    outputs[pos] = value
    with pytest.raises(KennenError) as err:
        _load(tmp_path, outputs, query_index)
    _one_line(err, re.escape(f"outputs[{pos[0]}, {pos[1]}, {pos[2]}] = ") + r"-?(nan|inf) is not finite")


@FAST
@given(pos=st.tuples(st.integers(0, 4), st.integers(0, 5), st.integers(0, 9)), value=st.floats(0.01, 1e30))
def test_a_positive_value_anywhere_is_not_a_log_probability(tmp_path, pos, value):
    outputs, query_index = _outputs()
    outputs[pos] = value
    with pytest.raises(KennenError) as err:
        _load(tmp_path, outputs, query_index)
    _one_line(err, re.escape(f"outputs[{pos[0]}, {pos[1]}, {pos[2]}] = ") + r".* > 0 is not a log-probability")


@FAST
@given(box=st.integers(0, 3), query=st.integers(0, 5), shift=st.floats(0.01, 50).map(lambda x: -x))
def test_rows_that_do_not_sum_to_one_are_refused(tmp_path, box, query, shift):
    outputs, query_index = _outputs()
    outputs[box, query] += shift  # still <= 0 everywhere, but sums to exp(shift) < 1
    with pytest.raises(KennenError) as err:
        _load(tmp_path, outputs, query_index)
    _one_line(err, re.escape(f"outputs[{box}, {query}] sums to probability"), "not 1")


def test_an_ensemble_row_must_be_its_members_mean(tmp_path):
    outputs, query_index = _outputs()
    outputs[4] = outputs[0]  # a valid log-softmax row, but not the mean of boxes 1 and 2
    with pytest.raises(KennenError) as err:
        _load(tmp_path, outputs, query_index)
    _one_line(err, r"outputs\[4, 0, \d\] = .*box 4 is the ensemble 5;7 whose mean there is")


@pytest.mark.parametrize(
    ("index", "message"),
    [
        ([100, -3, 102, 103, 104, 105], r"query_index\[1\] = -3 is negative"),
        ([100, 101, 10_000, 103, 104, 105], r"query_index\[2\] = 10000 is not below the 10000 test images"),
        ([100, 101, 102, 101, 104, 105], r"query_index\[3\] = 101 repeats query_index\[1\]"),
    ],
)
def test_query_indices_are_valid_and_distinct(tmp_path, index, message):
    outputs, _ = _outputs()
    with pytest.raises(KennenError) as err:
        _load(tmp_path, outputs, np.array(index))
    _one_line(err, message)


def test_check_cost_on_the_default_size_is_small():
    """~330 boxes x 1,000 queries x 10 classes (params.yaml's zoo and queries.n_max): well under a second."""
    rng = np.random.default_rng(0)
    outputs = torch.log_softmax(torch.from_numpy(rng.normal(size=(330, 1000, 10)).astype(np.float32)), -1).numpy()
    boxes = [{"box": i, "kind": "single", "id": i, "members": str(i)} for i in range(330)]
    start = time.perf_counter()
    schemas.check_outputs(Path("outputs.npz"), outputs, np.arange(1000), boxes)
    assert time.perf_counter() - start < 5.0


# --- params bounds ----------------------------------------------------------------------------------------------


def _params(**changes) -> dict:
    """The repository's params with ``changes`` ({"kennen_o.hidden": 10**12}) applied."""
    params = load_params("params.yaml")
    for key, value in changes.items():
        *path, last = key.split(".")
        node = params
        for part in path:
            node = node[part]
        node[last] = value
    return params


SECTIONS = {
    "kennen_o": KennenOParams,
    "kennen_o_sweep": SweepParams,
    "kennen_i": KennenIParams,
    "kennen_io": KennenIOParams,
    "sample_zoo": SampleParams,
    "train_zoo": TrainParams,
    "transfer": TransferParams,
    "imagenet_probe": ProbeParams,
}
# (params key, its bound): one knob per kind of work it sizes.
LIMITS = [
    ("kennen_o.hidden", 10_000),
    ("kennen_o.seeds", 100),
    ("kennen_o.n_queries", 10_000),
    ("kennen_o.optimisers.default.epochs", 10_000),
    ("kennen_o.optimisers.default.batch", 100_000),
    ("kennen_o.early_stop.patience", 10_000),
    ("kennen_o_sweep.subsets", 1_000),
    ("kennen_i.epochs", 10_000),
    ("kennen_i.step.batch", 100_000),
    ("kennen_io.seeds", 100),
    ("kennen_io.query_boxes", 100_000),
    ("sample_zoo.n_models", 100_000),
    ("sample_zoo.n_seeds", 10_000),
    ("train_zoo.epochs", 1_000),
    ("train_zoo.perm_seed", SEED_MAX),
    ("transfer.seed", SEED_MAX),
    ("transfer.regimes.zoo.epochs", 1_000),
    ("imagenet_probe.hidden", 10_000),
    ("imagenet_probe.offline.seeds", 100),
]


def _load_section(key: str, value) -> None:
    name = key.split(".")[0]
    section(SECTIONS[name], _params(**{key: value}), name)


@pytest.mark.parametrize(("key", "high"), LIMITS)
def test_each_knob_takes_its_bound(key, high):
    _load_section(key, high)


@pytest.mark.parametrize(("key", "high"), LIMITS)
@FAST
@given(over=st.integers(1, 10**40))
@pytest.mark.slow
def test_each_knob_refuses_a_value_above_its_bound(key, high, over):
    value = high + over
    with pytest.raises(KennenError) as err:
        _load_section(key, value)
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{key}: ")
    assert re.search(rf"is above its bound {high:,}|does not fit in 64 bits", text), text


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("seed", 10**40, r"^seed: 10{36}\.\.\. is above its bound 4,294,967,295$"),
        ("seed", 1 << 32, r"^seed: 4294967296 is above its bound 4,294,967,295$"),
        ("kennen_o.hidden", 10**12, r"^kennen_o.hidden: 1000000000000 is above its bound 10,000$"),
        ("sample_zoo.n_seeds", 10**30, r"^sample_zoo.n_seeds: 10{30} does not fit in 64 bits$"),
        ("sample_zoo.n_models", 10**9, r"^sample_zoo.n_models: 1000000000 is above its bound 100,000$"),
        ("kennen_o_sweep.n_queries", [1, 10**5], r"^kennen_o_sweep.n_queries: 100000 is above its bound 10,000$"),
        ("kennen_o.optimisers.default.lr", float("inf"), r"^kennen_o.optimisers.default.lr: inf is not a finite"),
        ("kennen_o.optimisers.default.lr", float("nan"), r"^kennen_o.optimisers.default.lr: nan is not a finite"),
        ("kennen_o.optimisers.default.lr", 10**400, r"^kennen_o.optimisers.default.lr: 10{36}\.\.\. does not fit"),
    ],
)
def test_the_reported_cases_are_one_line(key, value, message):
    with pytest.raises(KennenError) as err:
        if key == "seed":
            base_seed(_params(seed=value))
        else:
            _load_section(key, value)
    assert re.search(message, str(err.value)), str(err.value)


def test_params_yaml_infinity_is_refused(tmp_path):
    text = Path("params.yaml").read_text().replace("lr: 0.001, weight_decay", "lr: .inf, weight_decay", 1)
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(KennenError, match=r"^kennen_o.optimisers.default.lr: inf is not a finite number$"):
        section(KennenOParams, load_params(tmp_path / "params.yaml"), "kennen_o")


@pytest.mark.parametrize(
    ("seed", "message"),
    [(1 << 32, r"'4294967296' is not a 32-bit seed"), (1 << 64, r"'18446744073709551616' does not fit in 64 bits")],
)
def test_sample_table_seeds_are_32_bit(tmp_path, seed, message):
    from kennen.io import write_csv
    from kennen.schemas import SAMPLE, SAMPLE_COLUMNS, read_table

    row = {"model_id": 0, "shard": 0, "config": 5, "seed": 1, "torch_seed": seed, "act": "relu", "drop": 1}
    row |= {"pool": 1, "ks": 5, "n_conv": 2, "n_fc": 2, "alg": "adam", "bs": 64, "n_par": 14, "ens": 0}
    row |= {"split": "half_1", "size": "half", "n_params": 20_000}
    write_csv(tmp_path / "sample.csv", [row], SAMPLE_COLUMNS)
    with pytest.raises(KennenError, match=rf"line 2, column torch_seed: {message}"):
        read_table(tmp_path / "sample.csv", SAMPLE)


@pytest.mark.parametrize("side", ["train", "test"])
def test_an_empty_r_split_is_one_line(tmp_path, side):
    from kennen.splits import read_split

    split = {"train": [0, 1], "test": [2]} | {side: []}
    (tmp_path / "r.json").write_text(json.dumps(split))
    (tmp_path / "e_conv.json").write_text(json.dumps(split))
    with pytest.raises(
        KennenError, match=rf"r.json: key '{side}': no boxes \(the R split needs train and test boxes\)"
    ):
        read_split(tmp_path, "r")
    assert read_split(tmp_path, "e_conv") == split  # an E split may be empty on one side


# --- metamodel files --------------------------------------------------------------------------------------------

N_Q, HIDDEN = 3, 8  # a kennen-o of 3 queries and 8 hidden units


def _metamodel() -> tuple[dict[str, torch.Tensor], dict]:
    """A valid (untrained, calibrated) kennen-o as ``runner.finish`` saves it."""
    from kennen.metamodel.kennen_o import KennenO

    torch.manual_seed(0)
    tensors = {f"mlp.{k}": v for k, v in KennenO(N_Q * 10, HIDDEN).state_dict().items()}
    tensors |= {"queries": torch.rand(N_Q, 1, 28, 28), "calibration.temperature": torch.full((12,), 1.5)}
    tensors |= {"ood.reference": torch.randn(5, N_Q * 10)}
    meta = {"method": "kennen-o", "hidden": HIDDEN, "output": "prob", "test_accuracy": {"acc.mean": 50.0}}
    meta |= {"calibration": {"min_confidence": 0.5}, "ood": {"threshold": 1.2}}
    return tensors, meta


def _kennen_i() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"queries.each": torch.rand(12, 1, 28, 28), "fallback.each": torch.zeros(12, dtype=torch.int64)}
    tensors |= {"calibration.table": torch.full((12, 10), 0.5)}
    return tensors, {"method": "kennen-i", "target": "each", "test_accuracy": {"acc.mean": 50.0}}


def _save_load(tmp_path: Path, tensors: dict, meta, name: str = "kennen_o") -> None:
    from kennen.metamodel.artifact import load_metamodel, save_metamodel

    save_metamodel(tmp_path / name, tensors, meta)
    if not isinstance(meta, dict):
        (tmp_path / f"{name}.json").write_text(json.dumps(meta))
    load_metamodel(tmp_path / name)


def _set(name: str, value) -> callable:
    def edit(tensors, meta):
        tensors[name] = value

    return edit


def _meta(key: str, value) -> callable:
    def edit(tensors, meta):
        *path, last = key.split(".")
        node = meta
        for part in path:
            node = node[part]
        node[last] = value

    return edit


def _drop(name: str) -> callable:
    return lambda tensors, meta: tensors.pop(name)


def _zero_at(name: str, index: int, value: float) -> callable:
    def edit(tensors, meta):
        t = tensors[name].clone()
        t.view(-1)[index] = value
        tensors[name] = t

    return edit


def test_valid_metamodels_load(tmp_path):
    _save_load(tmp_path, *_metamodel())
    _save_load(tmp_path, *_kennen_i(), name="kennen_i")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_drop("mlp.body.0.weight"), r"no tensor 'mlp.body.0.weight'"),
        (
            _set("mlp.heads.act.weight", torch.zeros(3, HIDDEN)),
            r"'mlp.heads.act.weight' is \[3, 8\], expected \[4, 8\]",
        ),
        (_meta("hidden", 9), r"'mlp.body.0.weight' is \[8, 30\], expected \[9, 30\]"),
        (_meta("hidden", "8"), r"hidden '8' is not a width within 1..10,000"),
        (_meta("hidden", 10**12), r"hidden 1000000000000 is not a width within 1..10,000"),
        (_set("queries", torch.rand(4, 1, 28, 28)), r"'mlp.mean' is \[30\], expected \[40\]"),
        (_set("queries", torch.rand(3, 28, 28)), r"'queries' is \[3, 28, 28\], expected \[\?, 1, 28, 28\]"),
        (_set("queries", torch.full((3, 1, 28, 28), 2.0)), r"'queries' is not one or more images of pixels in"),
        (_zero_at("calibration.temperature", 4, 0.0), r"temperature 0.0 of n_conv is not > 0"),
        (_zero_at("calibration.temperature", 0, -1.0), r"temperature -1.0 of act is not > 0"),
        (_set("calibration.temperature", torch.ones(11)), r"'calibration.temperature' is \[11\], expected \[12\]"),
        (_zero_at("mlp.std", 2, 0.0), r"tensor 'mlp.std' has a value <= 0"),
        (_set("ood.reference", torch.zeros(5, 7)), r"'ood.reference' is \[5, 7\], expected \[\?, 30\]"),
        (_set("mlp.extra", torch.zeros(1)), r"unexpected tensor 'mlp.extra'"),
        (_meta("method", "kennen-x"), r"method 'kennen-x' is not one of kennen-o, kennen-io, kennen-i"),
        (_meta("calibration.min_confidence", 1.5), r"calibration.min_confidence 1.5 is not a finite number within"),
        (_meta("ood", []), r"ood.threshold 'not an object' is not a finite number"),
        (_meta("test_accuracy", {"acc.mean": "high"}), r"test_accuracy is not an object of finite numbers"),
    ],
)
def test_tampered_kennen_o_is_one_line(tmp_path, edit, message):
    tensors, meta = _metamodel()
    edit(tensors, meta)
    with pytest.raises(KennenError) as err:
        _save_load(tmp_path, tensors, meta)
    text = str(err.value)
    assert "\n" not in text and "kennen_o: not a metamodel this version can read (" in text, text
    assert re.search(message, text), text


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_meta("target", "all"), r"target 'all' has no tensor 'queries.<target>'"),
        (_set("fallback.each", torch.full((12,), 7, dtype=torch.int64)), r"fallback.each\[0\] is not a value index"),
        (_set("fallback.each", torch.zeros(12)), r"fallback.each\[0\] is not a value index of act"),
        (_set("calibration.table", torch.full((12, 10), 3.0)), r"'calibration.table' has a probability outside"),
        (_drop("fallback.each"), r"no tensor 'fallback.each'"),
    ],
)
def test_tampered_kennen_i_is_one_line(tmp_path, edit, message):
    tensors, meta = _kennen_i()
    edit(tensors, meta)
    with pytest.raises(KennenError, match=message):
        _save_load(tmp_path, tensors, meta, "kennen_i")


@FAST
@given(data=st.data(), value=st.sampled_from([float("nan"), float("inf"), float("-inf")]))
def test_a_non_finite_number_in_any_tensor_is_named(tmp_path, data, value):
    tensors, meta = _metamodel()
    name = data.draw(st.sampled_from(sorted(tensors)))
    index = data.draw(st.integers(0, tensors[name].numel() - 1))
    _zero_at(name, index, value)(tensors, meta)
    with pytest.raises(KennenError, match=re.escape(f"tensor {name!r} has {value} at flat index {index}")):
        _save_load(tmp_path, tensors, meta)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('["kennen-o"]', r"its description is a JSON list, not an object"),
        ('{"method": "kennen-o", "hidden": NaN}', r"kennen_o.json: corrupt metamodel description \(NaN is not a JSON"),
        ("\xff", r"kennen_o.json: corrupt metamodel description"),
    ],
)
def test_a_tampered_description_is_one_line(tmp_path, text, message):
    from kennen.metamodel.artifact import load_metamodel, save_metamodel

    save_metamodel(tmp_path / "kennen_o", *_metamodel())
    (tmp_path / "kennen_o.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(KennenError, match=message):
        load_metamodel(tmp_path / "kennen_o")


# --- shard weights against the models table -------------------------------------------------------------------

NETS = {0: ("relu", True, True, 5, 2, 2), 1: ("prelu", False, False, 3, 3, 3), 2: ("tanh", False, True, 3, 2, 4)}


def _zoo(tmp_path: Path) -> list[dict]:
    """Models 0 and 1 in shard 0, model 2 in shard 1, with their networks' real tensors."""
    from kennen.zoo.net import MnistNet, NetConfig
    from kennen.zoo.store import write_shard
    from kennen.zoo.train import TrainResult

    rows = []
    for i, values in NETS.items():
        cfg = NetConfig(*values)
        rows.append({"model_id": i, "shard": i // 2, **{k: getattr(cfg, k) for k in NetConfig.__dataclass_fields__}})
    for shard in (0, 1):
        results = [
            TrainResult(r["model_id"], MnistNet(NetConfig.of(r)).state_dict(), 99.0, 0.1, 1.0, False)
            for r in rows
            if r["shard"] == shard
        ]
        write_shard(tmp_path, shard, results)
    return rows


def test_valid_shards_pass(tmp_path):
    schemas.check_shards(tmp_path, _zoo(tmp_path), [0, 1, 2], tmp_path / "models.csv")


@FAST
@given(garbage=st.binary(max_size=300))
def test_a_garbage_shard_is_one_line(tmp_path, garbage):
    models = _zoo(tmp_path)
    (tmp_path / "shard-1.safetensors").write_bytes(garbage)
    with pytest.raises(KennenError, match=r"shard-1.safetensors: not a safetensors file \(") as err:
        schemas.check_shards(tmp_path, models, [0, 2], tmp_path / "models.csv")
    assert "\n" not in str(err.value)


def test_shards_hold_what_the_models_table_says(tmp_path):
    models = _zoo(tmp_path)
    where = tmp_path / "models.csv"
    with pytest.raises(KennenError, match=r"models.csv: model 7 is not in the table"):
        schemas.check_shards(tmp_path, models, [0, 7], where)
    models[1]["ks"] = 5  # the table says 5x5 kernels, the shard holds 3x3
    with pytest.raises(KennenError, match=r"shard-0.safetensors: tensor '1/features.0.weight' is \[10, 1, 3, 3\]"):
        schemas.check_shards(tmp_path, models, [1], where)
    models[1]["ks"], models[1]["n_fc"] = 3, 4  # one more fc layer than the shard holds
    with pytest.raises(KennenError, match=r"'1/classifier.4.weight' is \[10, 50\], model 1's network has \[50, 50\]"):
        schemas.check_shards(tmp_path, models, [1], where)
    models[0]["act"] = "prelu"  # PReLU has weights the shard does not hold
    with pytest.raises(KennenError, match=r"shard-0.safetensors: no tensor '0/\S+' \(model 0 of \S*models.csv is in"):
        schemas.check_shards(tmp_path, models, [0], where)
    models[2]["shard"] = 3
    with pytest.raises(KennenError, match=r"shard-3.safetensors: shard file not found"):
        schemas.check_shards(tmp_path, models, [2], where)


# --- metrics JSON read by later stages ------------------------------------------------------------------------

KENNEN_O_METRICS = {key: 50.0 for key, holds in schemas.METRICS["kennen_o"] if holds == "number"}
KENNEN_O_METRICS |= {"cv.n_boxes": 30, "cv.n_configs": 10, "cv.k": 5, "cv.acc.mean_low": 40.0}


@FAST
@given(key=st.sampled_from(sorted(KENNEN_O_METRICS)), constant=st.sampled_from(["NaN", "Infinity", "-Infinity"]))
def test_nan_and_infinity_are_not_json(tmp_path, key, constant):
    from kennen.io import read_json

    text = json.dumps(KENNEN_O_METRICS).replace(f'"{key}": {json.dumps(KENNEN_O_METRICS[key])}', f'"{key}": {constant}')
    (tmp_path / "m.json").write_text(text)
    for read in (read_json, lambda p: schemas.read_metrics(p, "kennen_o")):
        with pytest.raises(KennenError, match=rf"m.json: not valid JSON \({constant} is not a JSON number"):
            read(tmp_path / "m.json")


@pytest.mark.parametrize(
    ("kind", "change", "message"),
    [
        ("kennen_o", {"acc.act": None}, r"key 'acc.act': None is not a number"),
        ("kennen_o", {"cv.n_boxes": 30.5}, r"key 'cv.n_boxes': 30.5 is not a count"),
        ("kennen_i", {"cv.acc.mean": "high"}, r"key 'cv.acc.mean': 'high' is not a number"),
        ("kennen_io", {"cv.k": -1}, r"key 'cv.k': -1 is not a count"),
        ("kennen_o", {"x": [[[[[[1]]]]]]}, r"key 'x': nested deeper than a metrics file is"),
    ],
)
def test_metrics_keys_later_stages_read_are_typed(tmp_path, kind, change, message):
    (tmp_path / "m.json").write_text(json.dumps(KENNEN_O_METRICS | change))
    with pytest.raises(KennenError, match=message):
        schemas.read_metrics(tmp_path / "m.json", kind)


@pytest.mark.parametrize("kind", sorted(k for k in schemas.METRICS if schemas.METRICS[k]))
def test_every_metrics_kind_names_a_missing_key(tmp_path, kind):
    (tmp_path / "m.json").write_text("{}")
    first = schemas.METRICS[kind][0][0]
    with pytest.raises(KennenError, match=rf"m.json: no key '{re.escape(first)}' \(rerun the {kind} stage\)"):
        schemas.read_metrics(tmp_path / "m.json", kind)
    (tmp_path / "m.json").write_text("[1, 2]")
    with pytest.raises(KennenError, match=rf"a {kind} metrics file is a JSON object, got list"):
        schemas.read_metrics(tmp_path / "m.json", kind)


def test_the_repository_metrics_pass(tmp_path):
    """The metrics the pipeline committed (reports/metrics) satisfy their schemas."""
    root = Path("reports/metrics")
    names = {"zoo": "zoo", "kennen_o": "kennen_o", "kennen_i": "kennen_i", "kennen_io": "kennen_io"}
    names |= {"imagenet_probe": "imagenet_probe", "attack": "attack", "transfer": "transfer", "defences": "defences"}
    names |= {"levers": "levers"}
    for kind, name in names.items():
        if (root / f"{name}.json").is_file():
            schemas.read_metrics(root / f"{name}.json", kind)
    if (root / "kennen_o_sweep" / "n_train.json").is_file():
        schemas.read_metrics(root / "kennen_o_sweep" / "n_train.json", "learning_curve")


def test_report_stage_refuses_nan_metrics_in_one_line(tmp_path, capsys):
    from stages import report

    files = {}
    for name in (*report.METRICS.values(), "learning-curve"):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text("{}")
    files["kennen_o"].write_text(json.dumps(KENNEN_O_METRICS).replace("50.0", "NaN", 1))
    files["zoo"].write_text('{"n_final": 3}')
    argv = [f"--{name.replace('_', '-')}={path}" for name, path in files.items()]
    argv += ["--plots", str(tmp_path), "--out", str(tmp_path / "README.md"), "--params", "params.yaml"]
    assert report.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(r"kennen_o.json: not valid JSON \(NaN is not a JSON number", err), err
    assert not (tmp_path / "README.md").exists()
