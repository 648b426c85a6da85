"""The transfer stage: a trainer apart from the zoo's, its boxes through `kennen whiten`, the scores."""

from __future__ import annotations

import ast
import itertools
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from kennen import data as mnist_data
from kennen.attributes import ATTRIBUTES, BY_KEY, KEYS, SAMPLED
from kennen.config import section
from kennen.errors import KennenError
from kennen.io import read_csv
from kennen.metamodel.artifact import save_metamodel
from kennen.metamodel.kennen_o import KennenO
from kennen.schemas import METRICS
from kennen.transfer import foreign
from kennen.transfer.boxes import TransferParams, balanced_configs, box_specs
from kennen.transfer.score import SCORABLE, chance_mean, in_zoo_mean, method_metrics
from kennen.whiten import load_target
from kennen.zoo.net import NetConfig, count_params
from stages.transfer import main
from stages.transfer_boxes import main as boxes_main
from tests.conftest import REPO, synthetic_mnist

FORBIDDEN = ("kennen.zoo.train", "kennen.zoo.fused", "kennen.zoo.stacked", "kennen.zoo.net", "kennen.zoo.forward")
STRUCTURES = list(itertools.product(("relu", "prelu", "elu", "tanh"), (False, True), (False, True), (3, 5), (2, 3, 4), (2, 3, 4)))  # fmt: skip
TINY_REGIMES = {"zoo": {"n_boxes": 2, "epochs": 1, "pool": 400}, "long": {"n_boxes": 1, "epochs": 2, "pool": 400}}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("path", sorted((REPO / "kennen/transfer").glob("*.py")), ids=lambda p: p.name)
def test_no_zoo_trainer_or_network_imported(path):
    bad = {n for n in _imports(path) if n.startswith(FORBIDDEN) or n == "kennen.zoo"}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.slow
def test_worker_side_loads_no_zoo_module():
    code = "import sys, kennen.transfer.foreign; print([m for m in sys.modules if m.startswith('kennen.zoo')])"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_parameter_count_matches_the_zoo_for_every_structure():
    for s in STRUCTURES:
        assert foreign.count_params(foreign.build_net(*s)) == count_params(NetConfig(*s)), s


@pytest.mark.parametrize("structure", [("prelu", True, True, 5, 4, 4), ("tanh", False, False, 3, 2, 3)])
def test_outputs_are_log_probabilities(structure):
    net = foreign.build_net(*structure).eval()
    out = net(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(3))
    if structure[0] == "prelu":
        assert sum(isinstance(m, torch.nn.PReLU) for m in net.modules()) == 1  # one slope, shared


def test_subsets_are_disjoint_and_cut_from_the_pool():
    perm = foreign.permutation(1000, 7)
    assert not np.array_equal(perm, np.random.RandomState(20).permutation(1000))  # not the zoo's permutation
    quarters = [foreign.subset(perm, 400, f"quarter_{k}") for k in range(4)]
    halves = [foreign.subset(perm, 400, f"half_{k}") for k in range(2)]
    assert np.array_equal(np.concatenate(quarters), foreign.subset(perm, 400, "all"))
    assert np.array_equal(np.concatenate(halves), perm[:400]) and len(quarters[3]) == 100


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("transfer") / "mnist.npz"
    mnist_data.save(mnist_data.Mnist(**synthetic_mnist(n_train=600, n_test=200, seed=5)), path)
    return path


def _spec(**kw) -> foreign.BoxSpec:
    base = dict(regime="zoo", box=0, act="relu", drop=True, pool=True, ks=5, n_conv=2, n_fc=3, alg="sgd", bs=64,
                split="half_1", torch_seed=11, epochs=1, pool_size=400, perm_seed=7)  # fmt: skip
    return foreign.BoxSpec(**base | kw)


def test_training_changes_the_weights_and_is_deterministic(npz):
    torch.set_num_threads(1)
    spec = _spec()
    torch.manual_seed(spec.torch_seed)
    init = foreign.spec_net(spec).state_dict()
    data = foreign.load_data(npz)
    net, acc, diverged = foreign.train_box(spec, data)
    again, acc2, _ = foreign.train_box(spec, data)
    assert 0 <= acc <= 100 and not diverged and acc == acc2
    assert not net.training  # left in eval mode, as exported
    for k, v in net.state_dict().items():
        assert not torch.equal(v, init[k]), k  # every tensor trained (one seed: init is the untrained net's)
        torch.testing.assert_close(v, again.state_dict()[k], rtol=0, atol=0)


def test_export_round_trip_through_load_target(tmp_path):
    torch.manual_seed(0)
    net = foreign.build_net("prelu", True, False, 3, 3, 3)
    path = tmp_path / "box.pt2"
    path.write_bytes(foreign.program_bytes(net))
    box = load_target(str(path))
    for n in (1, 7):
        x = torch.randn(n, 1, 28, 28)
        with torch.no_grad():
            expected = net.eval()(x).numpy()
        np.testing.assert_allclose(box(x.numpy()), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(box(x.numpy()), box(x.numpy()))  # eval mode: no dropout


def test_balanced_configs_cover_every_value_evenly():
    rows = balanced_configs(24, 7, "zoo")
    for attr in SAMPLED:
        counts = Counter(r[attr.key] for r in rows)
        assert set(counts) == set(attr.values) and max(counts.values()) - min(counts.values()) <= 1, attr.key
    assert rows == balanced_configs(24, 7, "zoo") and rows != balanced_configs(24, 7, "long")


def test_box_specs_seeds_differ_per_regime_and_box():
    tp = section(TransferParams, {"transfer": {"regimes": TINY_REGIMES}}, "transfer")
    specs = box_specs(tp)
    assert [(s.regime, s.box, s.epochs) for s in specs] == [("zoo", 0, 1), ("zoo", 1, 1), ("long", 0, 2)]
    assert len({s.torch_seed for s in specs}) == 3


def test_chance_mean_over_the_ten_scored_attributes():
    assert SCORABLE == tuple(k for k in KEYS if k not in ("split", "ens")) and len(SCORABLE) == 10
    assert round(chance_mean(), 2) == 35.42


def test_scores_on_a_handmade_case():
    index = {a.key: i for i, a in enumerate(ATTRIBUTES)}
    rows = [{**{a.key: a.values[0] for a in ATTRIBUTES}, "act": act, "split": split, "size": split.split("_")[0]}
            for act, split in [("relu", "all"), ("tanh", "half_0"), ("relu", "quarter_1"), ("tanh", "quarter_2")]]  # fmt: skip
    y_true = np.array([[a.index(r[a.key]) for a in ATTRIBUTES] for r in rows])
    y_pred = y_true.copy()
    y_pred[:, index["act"]] = [0, 0, 0, 0]  # relu right twice, tanh never: balanced 50
    y_pred[:, index["bs"]] = 1  # every bs wrong: 0
    y_pred[:, index["ens"]] = 1  # not scored
    y_pred[:, index["split"]] = [BY_KEY["split"].index(s) for s in ("half_1", "half_0", "all", "quarter_0")]
    m = method_metrics(y_true, y_pred, seed=0)
    assert m["acc.act"] == 50.0 and m["acc.bs"] == 0.0 and m["acc.drop"] == 100.0
    assert m["acc.mean"] == 85.0  # (50 + 0 + 8 x 100) / 10
    assert "acc.split" not in m and "acc.ens" not in m
    assert m["acc.mean_low"] <= m["acc.mean"] <= m["acc.mean_high"] and "acc.size_high" in m
    assert m["split.pred.half_0"] == 25.0 and m["split.pred.half_1"] == 25.0 and m["split.pred.quarter_3"] == 0.0
    # implied sizes: half, half, all, quarter against all, half, quarter, quarter: recalls 0, 1, 1/2 -> 50
    assert m["split.size_acc"] == 50.0


def test_in_zoo_mean_reads_the_ten_attributes_cross_validated():
    metrics = {f"cv.acc.{k}": 40.0 for k in KEYS} | {"cv.acc.split": 0.0, "cv.acc.ens": 100.0, "cv.acc.mean": 1.0}
    assert in_zoo_mean(metrics | {"acc.act": 99.0}, "m.json") == 40.0  # the R split's figure is not the reference
    with pytest.raises(KennenError, match="m.json: no cv.acc.act"):
        in_zoo_mean({f"acc.{k}": 40.0 for k in KEYS}, "m.json")


@pytest.mark.parametrize(
    "override, key",
    [
        ({"regimes": {"zoo": {"n_boxes": 0}}}, "transfer.regimes.zoo.n_boxes"),
        ({"regimes": {"zoo": {"epochs": True}}}, "transfer.regimes.zoo.epochs"),
        ({"regimes": {"zoo": {"pool": 3}}}, "transfer.regimes.zoo.pool"),
        ({"regimes": {"zoo": {"size": 3}}}, "transfer.regimes.zoo.size"),
        ({"regimes": {"Zoo 1": {}}}, "transfer.regimes.Zoo 1"),
        ({"regimes": {}}, "transfer.regimes"),
        ({"methods": ["kennen-x"]}, "transfer.methods"),
        ({"methods": ["kennen-o", "kennen-o"]}, "transfer.methods"),
        ({"min_acc": 101}, "transfer.min_acc"),
        ({"seed": -1}, "transfer.seed"),
        ({"epochs": 3}, "transfer.epochs"),
    ],
)
def test_params_errors_name_the_key(override, key):
    with pytest.raises(KennenError, match=f"^{key}: "):
        section(TransferParams, {"transfer": {"regimes": {"zoo": {}}} | override}, "transfer")


def test_params_files_have_a_valid_section():
    for name in ("params.yaml", "profiles/paper.yaml"):
        tp = section(TransferParams, yaml.safe_load((REPO / name).read_text()), "transfer")
        assert set(tp.regimes) == {"zoo", "long"}


def _random_metamodels(models: Path, metrics: Path) -> None:
    """Untrained metamodels saved as the pipeline saves them: enough to drive the whole stage."""
    torch.manual_seed(0)
    for name in ("kennen_o", "kennen_io"):
        mlp = KennenO(5 * 10, 8)
        tensors = {f"mlp.{k}": v for k, v in mlp.state_dict().items()} | {"queries": torch.rand(5, 1, 28, 28)}
        save_metamodel(models / name, tensors, {"method": name.replace("_", "-"), "hidden": 8, "output": "prob"})
    crafted = {"queries.each": torch.rand(12, 1, 28, 28), "fallback.each": torch.zeros(12, dtype=torch.long)}
    save_metamodel(models / "kennen_i", crafted, {"method": "kennen-i", "target": "each"})
    counts = {"cv.n_boxes": 30, "cv.n_configs": 10, "cv.k": 5}
    for name in ("kennen_o", "kennen_io", "kennen_i"):
        accuracies = {key: 60.0 for key, holds in METRICS[name] if holds == "number"}  # every cv.acc.<key> 60
        (metrics / f"{name}.json").write_text(json.dumps(accuracies | counts))


@pytest.mark.slow
def test_stage_main_on_tiny_inputs(tmp_path, npz, monkeypatch):
    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")
    models, metrics_dir = tmp_path / "models", tmp_path / "metrics"
    metrics_dir.mkdir()
    _random_metamodels(models, metrics_dir)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"transfer": {"regimes": TINY_REGIMES, "min_acc": 0}}, sort_keys=False))
    (tmp_path / "out/zoo").mkdir(parents=True)
    (tmp_path / "out/zoo/box-9.pt2").write_text("stale")
    assert boxes_main(["--params", str(params), "--data", str(npz), "--out-dir", str(tmp_path / "out")]) == 0
    argv = ["--params", str(params), "--boxes", str(tmp_path / "out"), "--models", str(models),
            "--metrics", str(tmp_path / "transfer.json"), "--plots", str(tmp_path / "plots")]  # fmt: skip
    argv += [f"--{m}={metrics_dir / m.replace('-', '_')}.json" for m in ("kennen-o", "kennen-io", "kennen-i")]
    assert main(argv) == 0
    boxes = read_csv(tmp_path / "out/boxes.csv")
    assert [(b["regime"], b["box"]) for b in boxes] == [("zoo", "0"), ("zoo", "1"), ("long", "0")]
    assert sorted(p.name for p in (tmp_path / "out/zoo").iterdir()) == ["box-0.pt2", "box-1.pt2"]  # stale box gone
    assert all(b["ens"] == "0" and int(b["n_par"]) in BY_KEY["n_par"].values for b in boxes)
    m = json.loads((tmp_path / "transfer.json").read_text())
    assert m["chance_mean"] == 35.42 and m["zoo.n_boxes"] == 2 and m["long.n_scored"] == 1
    for regime, method in itertools.product(("zoo", "long"), ("kennen_o", "kennen_io", "kennen_i")):
        assert m[f"{regime}.{method}.in_zoo_mean"] == 60.0
        assert 0 <= m[f"{regime}.{method}.acc.mean"] <= 100 and f"{regime}.{method}.acc.mean_low" in m
    predictions = read_csv(tmp_path / "plots/predictions.csv")
    assert len(predictions) == 3 * 3 * 12


def test_stage_rejects_a_pool_larger_than_the_data(tmp_path, npz, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"transfer": {"regimes": {"zoo": {"pool": 601}}}}))
    argv = ["--params", str(params), "--data", str(npz), "--out-dir", str(tmp_path / "out")]
    assert boxes_main(argv) == 2
    assert "transfer.regimes.zoo.pool: 601 is more than the 600 training images" in capsys.readouterr().err


@pytest.mark.parametrize(
    "structure", [("tanh", True, True, 3, 4, 4), ("prelu", False, False, 5, 3, 3), ("elu", True, True, 5, 2, 2)]
)
def test_foreign_net_computes_the_zoo_template(structure):
    # extra_act "sampled": the same function as the zoo's network, given the same weights (parameters in the same order).
    from kennen.zoo.net import MnistNet, NetConfig

    zoo = MnistNet(NetConfig(*structure)).eval()
    net = foreign.build_net(*structure).eval()
    with torch.no_grad():
        for p, q in zip(net.parameters(), zoo.parameters(), strict=True):
            p.copy_(q)
        x = torch.randn(5, 1, 28, 28)
        assert torch.allclose(net(x), zoo(x), atol=1e-5)
        relu = foreign.build_net(*structure, extra_act="relu").eval()
        for p, q in zip(relu.parameters(), zoo.parameters(), strict=True):
            p.copy_(q)
        differs = structure[4] > 2 or structure[5] > 2
        assert differs == (not torch.allclose(relu(x), zoo(x), atol=1e-5))


def test_confidence_metrics_on_a_handmade_case():
    """Out-of-zoo rate, answered share and the accuracy with and without abstention over the ten scored attributes."""
    from kennen.attributes import ATTRIBUTES
    from kennen.transfer.score import SCORABLE, confidence_metrics
    from kennen.whiten import Finding, OutOfZoo, Report

    def report(answered: set[str], outside: bool) -> Report:
        findings = [Finding(a.key, a.labels[0] if a.key in answered else "unknown", 0.8 if a.key in answered else 0.3,
                            a.labels[0], a.key in answered, 0.9, 50.0) for a in ATTRIBUTES]  # fmt: skip
        return Report("box", "kennen-o", "logprob", 10, findings, {}, 0.5, {}, OutOfZoo(outside, 2.0, 1.0, 0.99))

    y_pred = np.zeros((2, len(ATTRIBUTES)), dtype=int)
    y_true = y_pred.copy()
    y_true[:, 0] = 1  # the first attribute (act) is wrong on both boxes
    m = confidence_metrics([report({"act", "drop"}, True), report(set(), False)], y_true, y_pred)
    assert m["ood_rate"] == 50.0
    assert m["answered"] == pytest.approx(100 * 2 / (2 * len(SCORABLE)))
    assert m["answered_acc"] == 50.0  # act wrong, drop right
    assert m["all_acc"] == pytest.approx(100 * (1 - 2 / (2 * len(SCORABLE))))
    assert 0 <= m["ece"] <= 1
