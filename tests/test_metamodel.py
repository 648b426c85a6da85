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
