import pytest

from kennen.config import from_dict
from kennen.errors import KennenError
from kennen.zoo.ensembles import EnsembleParams, build_ensembles
from kennen.zoo.net import NetConfig, count_params
from kennen.zoo.prune import PruneParams, kept_ids


def _model(model_id, config, cfg: NetConfig, acc=99.0, diverged=False):
    return {
        "model_id": model_id,
        "config": config,
        "act": cfg.act,
        "drop": cfg.drop,
        "pool": cfg.pool,
        "ks": cfg.ks,
        "n_conv": cfg.n_conv,
        "n_fc": cfg.n_fc,
        "alg": "sgd",
        "bs": 64,
        "split": "all",
        "size": "all",
        "n_params": count_params(cfg),
        "test_acc": acc,
        "diverged": diverged,
    }


SMALL = NetConfig("relu", False, True, 5, 2, 2)  # 21,840 parameters (2^14)
LARGE_POOL = NetConfig("relu", False, True, 5, 4, 4)  # 46,980 (2^15)
NOPOOL = NetConfig("relu", False, False, 5, 2, 2)  # 405,840 (2^18)
LARGEST = NetConfig("relu", True, False, 3, 4, 4)  # 590,820 (2^19)


@pytest.mark.parametrize(
    ("cfg", "members", "n_par"),
    [
        (SMALL, 2, 15),
        (SMALL, 3, 15),
        (SMALL, 4, 16),
        (LARGE_POOL, 2, 16),
        (LARGE_POOL, 3, 17),
        (NOPOOL, 2, 19),
        (NOPOOL, 3, 20),
        (LARGEST, 4, 21),
    ],
)
def test_ensembles_sum_member_parameters_and_reach_new_n_par_classes(cfg, members, n_par):
    models = [_model(i, 0, cfg) for i in range(members)]
    rows = build_ensembles(models, list(range(members)), max_members=members)
    full = [r for r in rows if r["n_members"] == members]
    assert len(full) == 1
    assert full[0]["n_params"] == members * count_params(cfg)
    assert full[0]["n_par"] == n_par and full[0]["ens"] is True


def test_ensembles_reach_16_17_20_21():
    reached = set()
    for cfg in (SMALL, LARGE_POOL, NOPOOL, LARGEST):
        models = [_model(i, 0, cfg) for i in range(4)]
        reached |= {r["n_par"] for r in build_ensembles(models, [0, 1, 2, 3], 4)}
    assert {16, 17, 20, 21} <= reached


def test_every_subset_of_2_to_max_members_within_a_configuration():
    models = [_model(i, i % 2, SMALL) for i in range(10)]  # config 0: ids 0,2,4,6,8; config 1: 1,3,5,7,9
    rows = build_ensembles(models, list(range(10)), max_members=4)
    # C(5,2) + C(5,3) + C(5,4) = 10 + 10 + 5 per configuration
    assert len(rows) == 2 * 25
    for r in rows:
        ids = [int(i) for i in r["members"].split(";")]
        assert len({i % 2 for i in ids}) == 1 and 2 <= len(ids) <= 4
    assert [r["ensemble_id"] for r in rows] == list(range(50))


def test_pruned_models_never_join_an_ensemble():
    models = [
        _model(0, 0, SMALL, 99),
        _model(1, 0, SMALL, 50),
        _model(2, 0, SMALL, 99, diverged=True),
        _model(3, 0, SMALL, 98),
    ]
    kept = kept_ids(models, 98)
    assert kept == [0, 3]
    assert [r["members"] for r in build_ensembles(models, kept, 4)] == ["0;3"]


@pytest.mark.parametrize(
    ("cls", "data", "message"),
    [
        (PruneParams, {"min_acc": 101}, "prune.min_acc: must be within 0..100"),
        (PruneParams, {"min_acc": -1}, "prune.min_acc: must be within 0..100"),
        (EnsembleParams, {"max_members": 1}, "ensembles.max_members: must be within 2..7"),
        (EnsembleParams, {"max_members": 8}, "ensembles.max_members: must be within 2..7"),
    ],
)
def test_bad_values_name_the_key(cls, data, message):
    with pytest.raises(KennenError, match=message):
        from_dict(cls, data, message.split(".")[0])


def test_ensemble_mean_is_the_members_mean_and_differentiable():
    import torch

    from kennen.zoo.ensembles import ensemble_mean

    out = torch.randn(4, 3, 10, requires_grad=True)
    members = [[0, 2], [1, 2, 3], [3]]
    got = ensemble_mean(out, members)
    for row, ms in enumerate(members):
        torch.testing.assert_close(got[row], out[ms].mean(0))
    got.sum().backward()
    torch.testing.assert_close(out.grad[:, 0, 0], torch.tensor([0.5, 1 / 3, 0.5 + 1 / 3, 1 / 3 + 1.0]))
    assert ensemble_mean(out, []).shape == (0, 3, 10)


def test_the_cap_keeps_every_single_model_and_the_largest_ensembles_first():
    models = [_model(i, 0 if i < 4 else 1, LARGEST) for i in range(6)]  # 4 seeds of one configuration, 2 of another
    rows = build_ensembles(models, list(range(6)), max_members=4, max_boxes_per_config=6)
    by_config = {c: [r["members"] for r in rows if r["config"] == c] for c in (0, 1)}
    assert by_config[0] == ["0;1;2", "0;1;2;3"]  # 4 singles + 2 ensembles: the 4-member one, then the first triple
    assert by_config[1] == ["4;5"]  # under the cap: every subset
    assert [r["n_par"] for r in rows if r["n_members"] == 4] == [21]  # the class only a 4-member ensemble reaches
    assert len(build_ensembles(models, list(range(6)), 4, max_boxes_per_config=4)) == 1  # room for pairs only: 4;5
    assert len(build_ensembles(models, list(range(6)), 4)) == 11 + 1  # no cap: every subset
