import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from kennen.attributes import ATTRIBUTES
from kennen.metamodel.kennen_o import KennenO, Optimiser, accuracies, fit, loss_fn, predict
from kennen.metamodel.metrics import balanced_accuracy, confusion, relative


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", range(5))
def test_balanced_accuracy_agrees_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 7, 200)
    y_true[y_true == 3] = 2  # a class absent from the test set does not count
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 7, 200))
    assert balanced_accuracy(y_true, y_pred) == pytest.approx(100 * balanced_accuracy_score(y_true, y_pred))


def test_confusion_and_relative():
    assert confusion(np.array([0, 1, 1]), np.array([0, 0, 1]), 2).tolist() == [[1, 0], [1, 1]]
    assert relative(25.0, 25.0, 75.0) == 0.0 and relative(75.0, 25.0, 75.0) == 100.0


def test_twelve_heads_in_a_module_dict_and_every_parameter_gets_a_gradient():
    model = KennenO(30, 16)
    assert isinstance(model.heads, torch.nn.ModuleDict)
    assert list(model.heads) == [a.key for a in ATTRIBUTES]
    assert {f"heads.{a.key}.weight" for a in ATTRIBUTES} <= set(model.state_dict())
    y = torch.stack([torch.randint(0, a.n_classes, (8,)) for a in ATTRIBUTES], 1)
    loss_fn(model(torch.randn(8, 30)), y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_kennen_o_learns_attributes_that_are_visible_in_the_outputs():
    torch.manual_seed(0)
    n = 400
    y = torch.stack([torch.randint(0, a.n_classes, (n,)) for a in ATTRIBUTES], 1)
    # Features that encode the first two attributes and noise for the rest.
    x = torch.cat(
        [
            torch.nn.functional.one_hot(y[:, 0], 4).float(),
            torch.nn.functional.one_hot(y[:, 1], 2).float(),
            torch.randn(n, 10),
        ],
        1,
    ) + 0.1 * torch.randn(n, 16)
    model = fit(x[:300], y[:300], 64, Optimiser("adam", 1e-3, epochs=30, batch=50), seed=0)
    acc = accuracies(y[300:].numpy(), predict(model, x[300:]))
    assert acc["acc.act"] > 90 and acc["acc.drop"] > 90
    # Attributes the features do not encode stay near chance: the metamodel does not invent signal.
    assert acc["acc.split"] < 40 and acc["acc.n_par"] < 30


def test_fit_is_deterministic():
    x = torch.randn(50, 20)
    y = torch.stack([torch.randint(0, a.n_classes, (50,)) for a in ATTRIBUTES], 1)
    opt = Optimiser("sgd", 1e-2, weight_decay=0.01, epochs=3, batch=10)
    a, b = fit(x, y, 32, opt, seed=3), fit(x, y, 32, opt, seed=3)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])


def test_asking_for_more_queries_than_stored_names_the_key():
    from kennen.errors import KennenError
    from kennen.metamodel.kennen_o import features

    with pytest.raises(KennenError, match="kennen_o.n_queries: 101 exceeds the 100 stored queries"):
        features(np.zeros((3, 100, 10), np.float32), 101, "prob")


def _toy(n: int = 60, d: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.stack([torch.randint(0, a.n_classes, (n,), generator=g) for a in ATTRIBUTES], 1)
    x = torch.randn(n, d, generator=g) + torch.nn.functional.one_hot(y[:, 0], 4).float().repeat(1, d // 4)
    return x, y


def test_fixed_schedule_is_the_plain_loop():
    """Early stopping off (or a carve too small to make) trains exactly as ``new_model`` + ``train_epochs``."""
    from kennen.metamodel.kennen_o import EarlyStop, fit_curve, new_model, train_epochs

    x, y = _toy()
    opt = Optimiser("adam", 1e-3, weight_decay=1e-3, epochs=4, batch=16)
    ref = new_model(x, 24, 11)
    train_epochs(ref, opt.build(ref.parameters()), x, y, opt.batch, opt.epochs, torch.Generator().manual_seed(11))
    for stop in (None, EarlyStop(0.0), EarlyStop(0.1, min_val=20)):  # 0.1 x 60 = 6 boxes < min_val: no carve
        model, curve = fit_curve(x, y, 24, opt, 11, stop=stop)
        assert curve.epochs == 4 and curve.n_val == 0 and curve.best_epoch is None
        for k, v in ref.state_dict().items():
            assert torch.equal(v, model.state_dict()[k]), k


def test_carve_splits_the_training_rows_only():
    from kennen.metamodel.kennen_o import EarlyStop

    fit_rows, val_rows = EarlyStop(0.25, min_val=5).carve(40, seed=3)
    assert len(val_rows) == 10 and len(fit_rows) == 30
    assert sorted(fit_rows.tolist() + val_rows.tolist()) == list(range(40))
    assert torch.equal(val_rows, EarlyStop(0.25, min_val=5).carve(40, seed=3)[1])  # seeded
    assert EarlyStop(0.25, min_val=11).carve(40, seed=3) is None
    groups = [i // 5 for i in range(40)]  # 8 configurations of 5 boxes: two of them held out
    fit_rows, val_rows = EarlyStop(0.25, min_val=5).carve(40, seed=3, groups=groups)
    assert len(val_rows) == 10 and not {groups[i] for i in fit_rows.tolist()} & {groups[i] for i in val_rows.tolist()}
    # one configuration cannot be carved whole without leaving nothing to fit: no carve, the fixed schedule
    assert EarlyStop(0.25, min_val=1).carve(4, seed=3, groups=[7, 7, 7, 7]) is None


def test_carve_with_checkpoint_rows_validates_on_final_boxes_and_drops_the_held_out_checkpoints():
    from kennen.metamodel.kennen_o import EarlyStop

    stop = EarlyStop(0.25, min_val=5)
    groups = [i // 5 for i in range(40)]  # 40 final boxes of 8 configurations, then 3 checkpoints of each box
    with_ckpt = groups + [g for g in groups for _ in range(3)]
    fit_rows, val_rows = stop.carve(len(with_ckpt), seed=3, groups=with_ckpt, n_boxes=40)
    plain_fit, plain_val = stop.carve(40, seed=3, groups=groups)
    assert torch.equal(val_rows, plain_val)  # the same carve as without checkpoints, on final boxes only
    assert fit_rows[: len(plain_fit)].tolist() == plain_fit.tolist()
    held = {groups[i] for i in val_rows.tolist()}
    extra = fit_rows[len(plain_fit) :].tolist()
    assert extra and all(r >= 40 and with_ckpt[r] not in held for r in extra)
    assert len(extra) == sum(with_ckpt[r] not in held for r in range(40, len(with_ckpt)))
    assert torch.equal(stop.carve(40, seed=3, groups=groups, n_boxes=40)[1], plain_val)
    with pytest.raises(ValueError, match="groups"):
        stop.carve(50, seed=3, n_boxes=40)


def test_training_boxes_of_one_configuration_train_on_the_fixed_schedule():
    from kennen.metamodel.kennen_o import EarlyStop, Optimiser, fit_curve

    x, y = _toy(8)
    opt = Optimiser("adam", 1e-3, epochs=3, batch=4)
    _, curve = fit_curve(x, y, 8, opt, seed=1, stop=EarlyStop(0.25, min_val=1), groups=[0] * 8)
    assert curve.n_val == 0 and curve.epochs == 3 and curve.best_epoch is None


def test_early_stopping_restores_the_best_epoch_and_trains_every_parameter():
    from kennen.metamodel.kennen_o import EarlyStop, fit_curve, new_model

    x, y = _toy(120)
    stop = EarlyStop(0.25, patience=3, min_val=5)
    opt = Optimiser("adam", 3e-3, epochs=40, batch=16)
    model, curve = fit_curve(x, y, 24, opt, 5, stop=stop)
    best = int(np.argmax(curve.val_acc))  # the first best epoch
    assert curve.best_epoch == best and curve.n_val == 30 and curve.n_fit == 90
    assert curve.epochs == len(curve.val_acc) == min(opt.epochs, best + stop.patience + 1)
    _, val_rows = stop.carve(len(x), 5)
    y_hat = predict(model, x[val_rows])
    restored = np.mean([balanced_accuracy(y[val_rows, i].numpy(), y_hat[:, i]) for i in range(12)])
    assert restored == pytest.approx(curve.val_acc[best])
    init = new_model(x[stop.carve(len(x), 5)[0]], 24, 5)  # same seed: the initial weights
    for name, p in model.named_parameters():
        assert not torch.equal(p, dict(init.named_parameters())[name]), name


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"seeds": 0}, "kennen_o.seeds: must be at least 1"),
        ({"early_stop": {"val_fraction": 1.0}}, "kennen_o.early_stop.val_fraction: must be in"),
        ({"early_stop": {"patience": 0}}, "kennen_o.early_stop.patience: must be at least 1"),
        ({"early_stop": {"patience": "ten"}}, "kennen_o.early_stop.patience: expected int"),
        ({"early_stop": {"epochs": 3}}, "kennen_o.early_stop.epochs: unknown key"),
    ],
)
def test_kennen_o_params_errors_name_the_key(override, needle):
    from kennen.config import from_dict
    from kennen.errors import KennenError
    from kennen.metamodel.kennen_o import KennenOParams

    data = {"optimisers": {"default": {"name": "adam", "lr": 1e-3}}} | override
    with pytest.raises(KennenError, match=needle):
        from_dict(KennenOParams, data, "kennen_o")


def test_refit_is_the_fixed_schedule_for_the_best_epoch_count_on_all_boxes():
    from dataclasses import replace

    from kennen.metamodel.kennen_o import EarlyStop, fit_curve

    x, y = _toy(120)
    opt = Optimiser("adam", 3e-3, epochs=12, batch=16)
    model, curve = fit_curve(x, y, 24, opt, 5, stop=EarlyStop(0.25, patience=2, min_val=5, refit=True))
    assert curve.refit_epochs == curve.best_epoch + 1
    ref = fit(x, y, 24, replace(opt, epochs=curve.refit_epochs), 5)
    for k, v in ref.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
