"""The zoo forward (both strategies), the projected query step, kennen-i's top-1 read-out, kennen-io's schedule,
its gap to its warm start (kennen-o), the intervals both report, and the tasks both order longest first."""

import copy
import dataclasses
import itertools

import numpy as np
import pytest
import torch

from kennen.attributes import ATTRIBUTES
from kennen.config import from_dict
from kennen.data import MEAN, STD
from kennen.errors import KennenError
from kennen.metamodel import kennen_i, kennen_io
from kennen.metamodel.crafted import ALL_BOXES, HIGH, LOW, BoxZoo, QueryStep, fold_name, to_pixels
from kennen.metamodel.cv import fold_of
from kennen.metamodel.kennen_o import Optimiser, fit, predict
from kennen.seeds import Purpose, derive
from kennen.stats import accuracies
from kennen.zoo.forward import STRATEGIES, ZooForward
from kennen.zoo.net import MnistNet, NetConfig


def valid(x: torch.Tensor) -> bool:
    """Every pixel within [0, 1] (the bounds as float32, the images' dtype), checked in normalised space."""
    return bool((x >= torch.tensor(LOW)).all() and (x <= torch.tensor(HIGH)).all())


def random_nets(n: int, seed: int = 0) -> list[MnistNet]:
    """Nets of varied structure with perturbed parameters (PReLU slopes away from their init)."""
    torch.manual_seed(seed)
    grid = list(itertools.product(("relu", "prelu", "elu", "tanh"), (False, True), (False, True), (3, 5), (2, 3, 4)))
    nets = []
    for i in range(n):
        act, drop, pool, ks, n_conv = grid[(7 * i) % len(grid)]
        net = MnistNet(NetConfig(act, drop, pool, ks, n_conv, 2 + i % 3))
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        nets.append(net.eval())
    return nets


@pytest.fixture(scope="module")
def nets():
    # 14 nets: some structures appear twice, so groups of one and of several are both exercised.
    return random_nets(10) + random_nets(4)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_zoo_forward_equals_each_network(nets, strategy):
    zoo = ZooForward(copy.deepcopy(nets), strategy)
    if strategy == "grouped":
        assert len(zoo.groups) < len(nets)
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        ref = torch.stack([n(x) for n in nets])
    assert torch.allclose(zoo(x), ref, atol=1e-5)
    order = [13, 2, 7, 0, 11]  # any subset, in the order asked
    assert torch.allclose(zoo(x, order), ref[order], atol=1e-5)


def input_gradients(zoo_nets, strategy: str | None, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    if strategy is None:
        out = torch.stack([n(x) for n in zoo_nets])
    else:
        out = ZooForward(copy.deepcopy(zoo_nets), strategy)(x)
    (out * w).sum().backward()
    return x.grad


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_zoo_forward_input_gradient_equals_each_networks(nets, strategy):
    x = torch.randn(3, 1, 28, 28)
    smooth = [n for n in nets if n.cfg.act in ("elu", "tanh") and not n.cfg.pool]
    assert len(smooth) >= 2
    w = torch.randn(len(smooth), 3, 10)
    assert torch.allclose(input_gradients(smooth, strategy, x, w), input_gradients(smooth, None, x, w), atol=1e-5)
    # ReLU, PReLU and max-pooling have kinks: a pre-activation within rounding of 0 (or a near-tie in a
    # pooling window) may route one pixel's gradient differently; everything else must agree.
    w = torch.randn(len(nets), 3, 10)
    diff = (input_gradients(nets, strategy, x, w) - input_gradients(nets, None, x, w)).abs()
    assert float((diff > 1e-5).float().mean()) < 0.01


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_zoo_forward_never_trains_the_zoo(nets, strategy):
    own = copy.deepcopy(nets)
    before = [p.clone() for n in own for p in n.parameters()]
    x = torch.randn(2, 1, 28, 28, requires_grad=True)
    ZooForward(own, strategy)(x).sum().backward()
    assert x.grad is not None
    assert all(p.grad is None for n in own for p in n.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, (p for n in own for p in n.parameters()), strict=True))


def test_box_zoo_ensemble_is_the_mean_of_member_log_probabilities(nets):
    members = [[0], [1, 2, 3], [4]]
    boxes = BoxZoo(nets, members)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        want = torch.stack([nets[1](x), nets[2](x), nets[3](x)]).mean(0)
    assert torch.allclose(boxes.outputs(x, [2, 1])[1], want, atol=1e-5)


@pytest.mark.parametrize("rule", ["sgd", "sign"])
def test_query_step_keeps_images_valid_whatever_the_gradient(rule):
    gen = torch.Generator().manual_seed(0)
    x = torch.empty(3, 1, 28, 28).uniform_(LOW, HIGH).requires_grad_(True)
    step = QueryStep(lr=50.0, noise=0.1, rule=rule)
    for _ in range(5):
        (x * torch.randn(x.shape)).sum().mul(100).backward()
        step.apply(x, gen)
        assert valid(x.detach())
        assert x.grad is None
    pixels = x.detach() * STD + MEAN
    assert float(pixels.min()) > -1e-6 and float(pixels.max()) < 1 + 1e-6
    assert float(pixels.min()) < 1e-6 and float(pixels.max()) > 1 - 1e-6  # the big steps did reach both bounds
    assert to_pixels(x).min() >= 0.0 and to_pixels(x).max() <= 1.0


def labels_for(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, a.n_classes, (n,), generator=g) for a in ATTRIBUTES], 1)


def test_kennen_i_images_stay_in_range_after_every_step(nets):
    boxes = BoxZoo(nets, [[i] for i in range(len(nets))])
    params = kennen_i.KennenIParams(epochs=2, step=QueryStep(lr=5.0, batch=4))
    seen = []

    def check(x):
        seen.append(x.clone())
        assert valid(x)

    init = torch.zeros(12, 1, 28, 28)
    x = kennen_i.craft(boxes, range(len(nets)), labels_for(len(nets)), init, params, seed=0, on_step=check)
    assert len(seen) == 2 * 4 and x.shape == (12, 1, 28, 28)
    assert not torch.equal(x, init)  # the images did move
    one = kennen_i.craft(boxes, range(4), labels_for(4), init, params, seed=0, target="all")
    assert one.shape == (1, 1, 28, 28)


def test_kennen_i_reads_only_the_top1_label():
    fallback = np.array([a.n_classes - 1 for a in ATTRIBUTES])
    labels = np.array([[0] * 12, [9] * 12, list(range(12))])
    pred = kennen_i.predict(labels, fallback, "each")
    assert pred[0].tolist() == [0] * 12
    assert pred[1].tolist() == fallback.tolist()  # digit 9 names no value of any attribute (at most 8 values)
    assert pred[2].tolist() == [j if j < a.n_classes else fallback[j] for j, a in enumerate(ATTRIBUTES)]
    # With one query for all attributes, every attribute reads the same label.
    assert kennen_i.predict(np.array([[1]]), fallback, "all").tolist() == [[1] * 12]
    with pytest.raises(TypeError, match="top-1 labels"):
        kennen_i.predict(np.random.rand(2, 12), fallback, "each")


def test_kennen_i_test_answers_are_the_argmax_of_the_boxes(nets):
    boxes = BoxZoo(nets, [[i] for i in range(len(nets))])
    x = torch.randn(12, 1, 28, 28)
    labels = kennen_i.evaluate_labels(boxes, x, [3, 5])
    with torch.no_grad():
        assert labels.tolist() == [nets[3](x).argmax(1).tolist(), nets[5](x).argmax(1).tolist()]
    assert labels.dtype.kind == "i"


def test_kennen_i_loss_variants():
    logp = torch.log_softmax(torch.randn(6, 12, 10), -1)
    y = labels_for(6)
    digits = kennen_i.attribute_loss(logp, y, "each", "digits")
    first_k = kennen_i.attribute_loss(logp, y, "each", "first_k")
    assert first_k < digits  # renormalising over k <= 10 classes can only raise the target's probability
    assert torch.isfinite(kennen_i.attribute_loss(logp[:, :1], y, "all", "digits"))


def test_kennen_io_schedule_trains_only_what_each_phase_names(nets):
    boxes = BoxZoo(nets, [[i] for i in range(len(nets))])
    zoo_before = [p.clone() for n in boxes.zoo.nets for p in n.parameters()]
    schedule = (
        kennen_io.Phase("metamodel", 2),
        kennen_io.Phase("queries", 1),
        kennen_io.Phase("metamodel", 1),
        kennen_io.Phase("queries", 1),
    )
    params = kennen_io.KennenIOParams(n_queries=3, schedule=schedule, step=QueryStep(lr=0.05, batch=5, rule="sign"))
    snapshots = []

    def on_phase(phase, model, queries):
        snapshots.append((phase, {k: v.clone() for k, v in model.state_dict().items()}, queries.clone()))

    init = torch.randn(5, 1, 28, 28).clamp(LOW, HIGH)
    trained = kennen_io.train(
        boxes,
        range(len(nets)),
        labels_for(len(nets)),
        init,
        params,
        16,
        Optimiser("adam", 1e-3, batch=5),
        0,
        on_phase=on_phase,
    )
    previous_model, previous_x = None, init[:3]
    for phase, model, x in snapshots:
        same_model = previous_model is not None and all(torch.equal(model[k], previous_model[k]) for k in model)
        if phase == "metamodel":
            assert torch.equal(x, previous_x) and not same_model
        else:
            assert same_model and not torch.equal(x, previous_x)
            assert valid(x)
        previous_model, previous_x = model, x
    assert all(p.requires_grad for p in trained.model.parameters())  # unfrozen again after query phases
    zoo_after = [p for n in boxes.zoo.nets for p in n.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(zoo_before, zoo_after, strict=True))
    assert kennen_io.evaluate(trained, boxes, [0, 1]).shape == (2, 12)


def test_kennen_io_params_validation():
    with pytest.raises(KennenError, match=r"kennen_io.schedule: must start with a metamodel phase"):
        from_dict(kennen_io.KennenIOParams, {"schedule": [{"train": "queries", "epochs": 1}]}, "kennen_io")
    with pytest.raises(KennenError, match=r"kennen_io.schedule\[0\].train: expected one of"):
        from_dict(kennen_io.KennenIOParams, {"schedule": [{"train": "mlp", "epochs": 1}]}, "kennen_io")
    with pytest.raises(KennenError, match=r"kennen_io.step.rule: expected 'sgd' or 'sign'"):
        from_dict(kennen_io.KennenIOParams, {"step": {"rule": "adam"}}, "kennen_io")
    with pytest.raises(KennenError, match=r"kennen_i.target: expected one of each, all"):
        from_dict(kennen_i.KennenIParams, {"target": "some"}, "kennen_i")


class InMemorySource:
    """Stands in for ``ZooSource``: the same ``boxes`` rows and ``load``, from networks in memory."""

    def __init__(self, nets, boxes):
        self.nets, self.boxes = nets, boxes

    def load(self, ids):
        return BoxZoo([self.nets[i] for i in ids], [[j] for j in range(len(ids))])


def box_rows(y: torch.Tensor) -> list[dict]:
    return [{a.key: a.values[int(v)] for a, v in zip(ATTRIBUTES, row, strict=True)} for row in y]


SHORT = (kennen_io.Phase("metamodel", 3), kennen_io.Phase("queries", 2), kennen_io.Phase("metamodel", 2))


@pytest.fixture(scope="module")
def io_run(nets):
    """kennen-io on 10 training and 4 test boxes of the 14 nets, through the executor entry point."""
    y = labels_for(len(nets), seed=1)
    source = InMemorySource(nets, box_rows(y))
    splits = {"r": {"train": list(range(10)), "test": list(range(10, 14))}}
    params = kennen_io.KennenIOParams(
        n_queries=3, schedule=SHORT, query_boxes=6, step=QueryStep(lr=0.05, batch=3, rule="sign")
    )
    init = torch.randn(5, 1, 28, 28).clamp(LOW, HIGH).numpy()
    opt = Optimiser("adam", 1e-3, batch=4)
    result = kennen_io.run_task(("r", 0), source, splits, init, params, 16, opt, seed=3)
    return {"result": result, "y": y, "source": source, "init": init, "params": params, "opt": opt}


def test_kennen_io_warm_start_is_kennen_o_with_the_same_seed(nets, io_run):
    # The warm start that gap_vs_o compares against is exactly kennen_o.fit on the initial queries' outputs.
    zoo, y, init, opt = io_run["source"].load(range(14)), io_run["y"], torch.from_numpy(io_run["init"]), io_run["opt"]
    feats = kennen_io.flat(zoo.outputs(init[:3], list(range(14))))
    seed = derive(3, Purpose.KENNEN_IO, 0)  # run_task's metamodel seed for replica 0 of base seed 3
    model = fit(feats[:10], y[:10], 16, dataclasses.replace(opt, epochs=SHORT[0].epochs), seed=seed)
    assert np.array_equal(predict(model, feats[10:]), io_run["result"]["o_pred"])


def test_kennen_io_phase_log_is_continuous_and_says_what_moved(io_run):
    phases = io_run["result"]["phases"]
    assert [(p["train"], p["epochs"]) for p in phases] == [(p.train, p.epochs) for p in SHORT]
    for before, after in itertools.pairwise(phases):
        assert after["loss_before"] == before["loss_after"]  # exact losses, same model and queries at the seam
    assert [p["moved"] > 0 for p in phases] == [False, True, False]
    r = io_run["result"]
    assert r["moved"] == pytest.approx(phases[1]["moved"], abs=1e-5)
    pixels = io_run["init"][:3] * STD + MEAN
    assert r["moved"] == pytest.approx(float(np.abs(r["queries"] - pixels.clip(0, 1)).mean()), abs=1e-4)
    rows = kennen_io.phase_rows([r])
    assert (
        [row["phase"] for row in rows] == [0, 1, 2]
        and rows[0]["split"] == "r"
        and rows[0]["seed"] == derive(3, Purpose.KENNEN_IO, 0)
    )


def test_kennen_io_query_epochs_visit_query_boxes_boxes(nets):
    visited = []

    class Counting(BoxZoo):
        def __call__(self, x, boxes):
            if x.requires_grad:
                visited.append(len(boxes))
            return super().__call__(x, boxes)

    zoo = Counting(nets, [[i] for i in range(len(nets))])
    for query_boxes, per_epoch in ((5, 5), (None, 14), (100, 14)):
        visited.clear()
        params = kennen_io.KennenIOParams(n_queries=2, schedule=SHORT, query_boxes=query_boxes, step=QueryStep(batch=4))
        kennen_io.train(
            zoo, range(14), labels_for(14), torch.zeros(2, 1, 28, 28), params, 8, Optimiser("adam", 1e-3), 0
        )
        assert sum(visited) == SHORT[1].epochs * per_epoch and max(visited) <= 4


UNITS = [0, 0, 1, 2]  # the io_run test boxes' configurations: two siblings and two of their own


def test_kennen_io_r_metrics_gap_and_intervals(io_run):
    r = io_run["result"]
    assert r["test"] == [10, 11, 12, 13] and len(r["train_features"]) == 10
    assert [z.shape for z in r["logits"]] == [(4, a.n_classes) for a in ATTRIBUTES]
    assert np.array_equal(np.stack([z.argmax(1) for z in r["logits"]], 1), r["y_pred"])
    m = kennen_io.r_metrics(r, UNITS, seed=5)
    o = accuracies(r["y_true"], r["o_pred"])
    # diff is kennen-io's mean minus its warm start's
    assert m["gap_vs_o.diff"] == pytest.approx(m["acc.mean"] - o["mean"], abs=1e-9)
    assert m["gap_vs_o.o_mean"] == o["mean"]
    assert m["gap_vs_o.low"] <= m["gap_vs_o.diff"] <= m["gap_vs_o.high"]
    assert m["gap_vs_o.beyond_noise"] == float(m["gap_vs_o.low"] > 0 or m["gap_vs_o.high"] < 0)
    for a in [*(a.key for a in ATTRIBUTES), "mean"]:
        assert m[f"acc.{a}_low"] <= m[f"acc.{a}"] <= m[f"acc.{a}_high"]
    assert m["gap_vs_o.o_mean_low"] <= m["gap_vs_o.o_mean"] <= m["gap_vs_o.o_mean_high"]
    assert m["queries.moved"] > 0 and m["query_phase1.moved"] > 0 and "query_phase2.moved" not in m
    assert m["query_phase1.loss_before"] == r["phases"][0]["loss_after"]


def test_kennen_io_gap_is_zero_without_query_phases(io_run):
    # With only MLP phases kennen-io is kennen-o trained longer; with one phase it is kennen-o itself.
    params = dataclasses.replace(io_run["params"], schedule=SHORT[:1])
    splits = {"r": {"train": list(range(10)), "test": list(range(10, 14))}}
    r = kennen_io.run_task(("r", 0), io_run["source"], splits, io_run["init"], params, 16, io_run["opt"], seed=3)
    assert np.array_equal(r["y_pred"], r["o_pred"]) and r["moved"] == 0
    m = kennen_io.r_metrics(r, UNITS, seed=5)
    assert m["gap_vs_o.diff"] == 0 and m["gap_vs_o.low"] == 0 == m["gap_vs_o.high"] and m["gap_vs_o.beyond_noise"] == 0


def test_kennen_io_trains_without_test_boxes(io_run):
    """The all-box metamodel: every box trains it, the test entries are empty."""
    splits = {ALL_BOXES: {"train": list(range(14)), "test": []}}
    r = kennen_io.run_task(
        (ALL_BOXES, 0), io_run["source"], splits, io_run["init"], io_run["params"], 16, io_run["opt"], seed=3
    )
    assert (
        r["y_pred"].shape == (0, 12)
        and r["o_pred"].shape == (0, 12)
        and r["logits"][0].shape == (0, ATTRIBUTES[0].n_classes)
    )
    assert r["train_features"].shape == (14, 3 * 10) and r["moved"] > 0


def _noisy_results(n: int, n_results: int, seed: int = 0) -> tuple[np.ndarray, list[dict]]:
    """Truths [n, 12] and results whose kennen-io is right with probability 0.7, its warm start 0.5."""
    rng = np.random.default_rng(seed)
    y = np.stack([rng.integers(0, a.n_classes, n) for a in ATTRIBUTES], 1)

    def noisy(p):  # a prediction right with probability p
        return np.where(rng.random(y.shape) < p, y, np.stack([rng.integers(0, a.n_classes, n) for a in ATTRIBUTES], 1))

    return y, [{"y_true": y, "y_pred": noisy(0.7), "o_pred": noisy(0.5)} for _ in range(n_results)]


def test_kennen_io_seeds_and_e_rows():
    y, results = _noisy_results(60, 3)
    s = kennen_io.seed_metrics(results)
    assert s["seeds.n"] == 3 and s["seeds.acc.mean_low"] <= s["seeds.acc.mean"] <= s["seeds.acc.mean_high"]
    assert s["seeds.gap_vs_o.diff"] > 0 and s["seeds.gap_vs_o.diff_low"] <= s["seeds.gap_vs_o.diff"]
    assert kennen_io.seed_metrics(results[:1]) == {}  # one seed: no spread (and no NaN in the metrics)
    held = {"n_conv": [4]}
    r_acc = {f"acc.{k}": v for k, v in accuracies(y, results[0]["y_pred"]).items()}
    units = [i // 3 for i in range(60)]  # 20 configurations of 3 boxes
    row = kennen_io.e_row("e_conv", {"train": [0] * 5, "test": [0] * 60}, held, results[1], r_acc, units, seed=0)
    assert row["acc_mean_low"] <= row["acc_mean"] <= row["acc_mean_high"]
    # acc_mean (and so its interval) is over the attributes the E split can show: all but the held-out n_conv
    acc = accuracies(y, results[1]["y_pred"])
    assert row["acc_mean"] == pytest.approx(np.mean([acc[a.key] for a in ATTRIBUTES if a.key != "n_conv"]), abs=0.01)


def test_kennen_io_out_of_fold_and_cv_metrics():
    """Fold results put back in box order; the cv block, the warm start's means and the paired gap."""
    y, results = _noisy_results(30, 1)
    folds = [
        [0, 3, 4, 7, 8, 11, 12, 15, 16, 19],
        [1, 5, 9, 13, 17, 21, 23, 25, 27, 29],
        [2, 6, 10, 14, 18, 20, 22, 24, 26, 28],
    ]
    io, o = results[0]["y_pred"], results[0]["o_pred"]
    logits = [np.eye(a.n_classes)[io[:, i]] for i, a in enumerate(ATTRIBUTES)]
    per_fold = [{"y_pred": io[f], "o_pred": o[f], "logits": [z[f] for z in logits]} for f in folds]
    oof = kennen_io.out_of_fold(folds, per_fold, 30)
    assert np.array_equal(oof["y_pred"], io) and np.array_equal(oof["o_pred"], o)
    assert all(np.array_equal(a, b) for a, b in zip(oof["logits"], logits, strict=True))
    units = [i // 2 for i in range(30)]
    m = kennen_io.cv_metrics(y, io, o, units, seed=1)
    assert m["cv.n_boxes"] == 30 and m["cv.n_configs"] == 15
    assert m["cv.acc.mean"] == accuracies(y, io)["mean"] and m["cv.o.acc.mean"] == accuracies(y, o)["mean"]
    assert m["cv.o.acc_config.mean_low"] <= m["cv.o.acc_config.mean"] <= m["cv.o.acc_config.mean_high"]
    assert "cv.o.acc.act" not in m  # the warm start's means only
    for kind in ("acc", "acc_config"):
        gap = m[f"cv.gap_vs_o.{kind}.diff"]
        assert gap == pytest.approx(m[f"cv.{kind}.mean"] - m[f"cv.o.{kind}.mean"], abs=1e-9)
        assert m[f"cv.gap_vs_o.{kind}.low"] <= gap <= m[f"cv.gap_vs_o.{kind}.high"] and gap > 0


def test_kennen_io_tasks_and_schedules():
    e = (kennen_io.Phase("metamodel", 5),)
    params = kennen_io.KennenIOParams(e_schedule=e, seeds=2, splits=("r", "e_alg"), query_boxes=50)
    splits = {
        "r": {"train": list(range(200))},
        "e_alg": {"train": list(range(150))},
        ALL_BOXES: {"train": list(range(320))},
    } | {fold_name(f): {"train": list(range(256))} for f in range(2)}
    todo = kennen_io.tasks(params, splits, ["r", "e_alg", fold_name(0), fold_name(1), ALL_BOXES])
    # the R schedule's tasks by their training boxes (the MLP's epochs), then the short E schedule's
    assert todo == [(ALL_BOXES, 0), ("cv-0", 0), ("cv-1", 0), ("r", 0), ("r", 1), ("e_alg", 0)]
    assert params.schedule_for("r") == kennen_io.PAPER_SCHEDULE and params.schedule_for("e_alg") == e
    assert params.schedule_for("cv-0") == params.schedule_for(ALL_BOXES) == kennen_io.PAPER_SCHEDULE
    assert kennen_io.KennenIOParams().schedule_for("e_alg") == kennen_io.PAPER_SCHEDULE  # no e_schedule: R's
    short = (kennen_io.Phase("metamodel", 3), kennen_io.Phase("queries", 1))
    cv = dataclasses.replace(params, cv_schedule=short)
    assert cv.schedule_for("cv-0") == cv.schedule_for(ALL_BOXES) == short  # the folds and the saved model
    assert cv.schedule_for("r") == kennen_io.PAPER_SCHEDULE and cv.schedule_for("e_alg") == e  # untouched
    # query epochs dominate: a task of the paper's schedule costs several times one of the E schedule
    assert kennen_io.cost(params, "r", 200) > 3 * kennen_io.cost(params, "e_alg", 200) > 0


def test_fold_names_never_clash_with_e_splits():
    assert not fold_name(0).isidentifier() and not ALL_BOXES.isidentifier()  # E split names are identifiers
    assert kennen_io.KennenIOParams(splits=("r", "e_alg")).schedule_for(fold_name(3)) == kennen_io.PAPER_SCHEDULE
    assert fold_of([[2, 0], [1]], 3).tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="in no fold"):
        fold_of([[0]], 2)


@pytest.mark.parametrize(
    "section, needle",
    [
        ({"e_schedule": [{"train": "queries", "epochs": 1}]}, r"kennen_io.e_schedule: must start with a metamodel"),
        ({"e_schedule": []}, r"kennen_io.e_schedule: needs at least one phase"),
        (
            {"e_schedule": [{"train": "metamodel", "epochs": 0}]},
            r"kennen_io.e_schedule\[0\].epochs: must be at least 1",
        ),
        ({"schedule": [{"train": "metamodel", "epochs": "x"}]}, r"kennen_io.schedule\[0\].epochs: expected int"),
        ({"query_boxes": 0}, r"kennen_io.query_boxes: must be at least 1"),
        ({"query_boxes": 2.5}, r"kennen_io.query_boxes: expected int"),
        ({"seeds": 0}, r"kennen_io.seeds: must be at least 1"),
        ({"sched": []}, r"kennen_io.sched: unknown key"),
    ],
)
def test_kennen_io_schedule_params_name_the_key(section, needle):
    with pytest.raises(KennenError, match=needle):
        from_dict(kennen_io.KennenIOParams, section, "kennen_io")


def test_kennen_io_params_accept_null_and_e_schedule():
    p = from_dict(
        kennen_io.KennenIOParams,
        {"query_boxes": None, "e_schedule": [{"train": "metamodel", "epochs": 3}]},
        "kennen_io",
    )
    assert p.query_boxes is None and p.e_schedule == (kennen_io.Phase("metamodel", 3),)


def test_kennen_i_scores_carry_intervals():
    rng = np.random.default_rng(1)
    y = np.stack([rng.integers(0, a.n_classes, 40) for a in ATTRIBUTES], 1)
    pred = np.where(rng.random(y.shape) < 0.6, y, 0)
    m = kennen_i.scores({"y_true": y, "y_pred": pred}, [i // 4 for i in range(40)], seed=0)
    for a in [*(a.key for a in ATTRIBUTES), "mean"]:
        assert m[f"acc.{a}_low"] <= m[f"acc.{a}"] <= m[f"acc.{a}_high"]


def test_kennen_i_tasks_longest_first():
    splits = {"r": {"train": list(range(200))}, ALL_BOXES: {"train": list(range(320))}, "cv-0": {"train": [0] * 256}}
    todo = kennen_i.tasks(["all", "each"], splits, ["r", "cv-0", ALL_BOXES])
    assert todo == [
        ("each", ALL_BOXES),
        ("each", "cv-0"),
        ("each", "r"),
        ("all", ALL_BOXES),
        ("all", "cv-0"),
        ("all", "r"),
    ]


def test_kennen_i_runs_without_test_boxes(nets):
    y = labels_for(len(nets), seed=2)
    source = InMemorySource(nets, box_rows(y))
    params = kennen_i.KennenIParams(epochs=1, step=QueryStep(batch=4))
    splits = {ALL_BOXES: {"train": list(range(14)), "test": []}, "cv-0": {"train": list(range(10)), "test": [10, 11]}}
    init = torch.zeros(12, 1, 28, 28).numpy()
    full = kennen_i.run_task(("each", ALL_BOXES), source, splits, init, params, seed=0)
    assert (
        full["labels"].shape == (0, 12) and full["y_pred"].shape == (0, 12) and full["train_labels"].shape == (14, 12)
    )
    fold = kennen_i.run_task(("all", "cv-0"), source, splits, init, params, seed=0)
    assert fold["labels"].shape == (2, 1) and fold["test"] == [10, 11] and fold["y_true"].tolist() == y[10:12].tolist()


def test_kennen_i_out_of_fold_calibration_is_cross_fitted():
    """Each fold's confidence comes from the other folds' table; what is saved is fitted on every box."""
    from kennen.metamodel.calibration import CalibrationParams, ece, label_table, table_confidence

    rng = np.random.default_rng(3)
    n = 60
    y = np.stack([rng.integers(0, a.n_classes, n) for a in ATTRIBUTES], 1)
    labels = np.where(rng.random(y.shape) < 0.7, y, rng.integers(0, 10, y.shape))
    pred = kennen_i.predict(labels, np.zeros(12, dtype=np.int64), "each")
    folds = [list(range(f, n, 3)) for f in range(3)]
    which = fold_of(folds, n)
    units = [i // 2 for i in range(n)]
    cp = CalibrationParams()
    cal = kennen_i.calibrate_out_of_fold(labels, pred, y, which, units, labels, cp, seed=0, name="kennen-i")
    ok = pred == y
    assert np.allclose(cal.tensors["calibration.table"].numpy(), label_table(labels, ok), atol=1e-6)
    m = cal.metrics
    assert m["calibration.n_val"] == n and m["ece_before"] == pytest.approx(1 - ok.mean(), abs=1e-4)
    assert m["ece_before_low"] <= m["ece_before"] <= m["ece_before_high"]
    assert m["ece_after_low"] <= m["ece_after"] <= m["ece_after_high"] and m["ece_after"] < m["ece_before"]
    # fold f's reported confidence comes from the other folds' table, not from the saved one
    expected = np.zeros(ok.shape)
    for f in range(3):
        inside = which == f
        expected[inside] = table_confidence(label_table(labels[~inside], ok[~inside]), labels[inside])
    assert m["ece_after"] == pytest.approx(ece(expected, ok, cp.bins), abs=1e-4)
    assert sum(r["count"] for r in cal.reliability if r["calibration"] == "kennen-i after") == n * 12
    assert cal.tensors["ood.reference"].shape == (n, 120) and "out-of-fold" in cal.fitted_on
    assert 0 <= m["ood.test_rate"] <= 100 and len(cal.risk_coverage) == 20
