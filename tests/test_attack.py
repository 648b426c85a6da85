"""Family-aware adversarial examples (kennen/imagenet/attack.py)."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from kennen.imagenet.attack import SCENARIOS, make_plan, misclassification, pgd, tables
from kennen.imagenet.families import PAPER_FAMILIES
from kennen.imagenet.offline import PixelInput, to_rgb

NAMES = [m for ms in PAPER_FAMILIES.values() for m in ms]
FAMILY = {m: f for f, ms in PAPER_FAMILIES.items() for m in ms}


def _tiny(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))


@pytest.mark.parametrize(
    "eps, step, steps, start", [(0.1, 0.025, 10, True), (0.3, 1.0, 3, False), (0.01, 0.5, 20, True)]
)
def test_every_perturbation_respects_the_budget_and_the_pixel_range(eps, step, steps, start):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 28, 28, generator=gen)
    x[:, :, :4] = 0.0  # saturated pixels: the projection must keep them in range
    x[:, :, -4:] = 1.0
    y = torch.randint(0, 10, (16,), generator=gen)
    adv = pgd([_tiny(1), _tiny(2)], x, y, eps, step, steps, gen if start else None)
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() > 0.5 * eps  # it did move


def test_white_box_attack_raises_the_misclassification():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 28, 28)
    model = _tiny(3)
    y = model(x).argmax(1)  # the model is right on every image by construction
    assert misclassification(model, x, y) == 0
    adv = pgd([model], x, y, eps=0.05, step=0.01, steps=10, generator=torch.Generator().manual_seed(1))
    assert misclassification(model, adv, y) > 90


def test_pixel_input_equals_the_zoo_preprocessing():
    from torchvision.models import get_model

    torch.manual_seed(0)
    net = get_model("squeezenet1_1", weights=None, num_classes=10).eval()
    digits = np.random.default_rng(0).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    want = net(to_rgb(digits, 32))
    got = PixelInput(net, 32)(torch.from_numpy(digits).float()[:, None] / 255.0)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def _plan(predicted=None):
    return make_plan(dict(PAPER_FAMILIES), predicted or dict(FAMILY), seed=5)


def test_leave_one_out_never_attacks_a_target_with_itself():
    plan = _plan()
    for t in NAMES:
        for row in [*PAPER_FAMILIES, "ens"]:
            gens = plan.generators(row, t)
            assert t not in gens
            if row == "ens":
                assert sorted(FAMILY[g] for g in gens) == sorted(PAPER_FAMILIES)  # one model of every family
            else:
                assert set(gens) <= set(PAPER_FAMILIES[row]) and len(gens) == len(PAPER_FAMILIES[row]) - 1
        for s in ("true_family", "predicted_family", "all_families"):
            assert t not in plan.scenario(s, t)
        assert plan.scenario("white_box", t) == (t,)
    for job in plan.jobs:  # and no job lists a target among its own generators, except the white box
        assert all(t not in job.generators or job.generators == (t,) for t in job.targets)


def test_across_family_rows_leave_out_one_member_drawn_once():
    plan = _plan()
    for row in PAPER_FAMILIES:
        others = [t for t in NAMES if FAMILY[t] != row]
        sets = {plan.generators(row, t) for t in others}
        assert len(sets) == 1 and plan.left_out[row] not in next(iter(sets))
    assert _plan().left_out == plan.left_out  # deterministic from the seed


def test_the_predicted_family_scenario_uses_the_probes_prediction():
    wrong = {t: ("vgg" if FAMILY[t] != "vgg" else "resnet") for t in NAMES}  # a probe that is always wrong
    plan = _plan(wrong)
    for t in NAMES:
        assert plan.scenario("predicted_family", t) == plan.generators(wrong[t], t)
        assert plan.scenario("predicted_family", t) != plan.scenario("true_family", t)
    # Every generating set gets its own number: the table must read the prediction's.
    codes = {job.generators: float(i) for i, job in enumerate(plan.jobs)}
    mc = {(job.generators, t): codes[job.generators] for job in plan.jobs for t in job.targets}
    out = tables(plan, mc, {t: 0.0 for t in NAMES})
    for t, row in out["per_target"].items():
        assert row["predicted_family"] == codes[plan.generators(wrong[t], t)]
        assert row["predicted"] == wrong[t] and row["family"] == FAMILY[t]
    right = tables(_plan(), {(j.generators, t): codes.get(j.generators, -1.0) for j in _plan().jobs for t in j.targets},
                   {t: 0.0 for t in NAMES})  # fmt: skip
    assert right["table5"]["predicted_family"] == right["table5"]["true_family"]  # a perfect probe changes nothing


def test_tables_cover_every_cell_and_scenario():
    plan = _plan()
    gen = np.random.default_rng(0)
    mc = {(j.generators, t): float(gen.integers(0, 100)) for j in plan.jobs for t in j.targets}
    out = tables(plan, mc, {t: 10.0 for t in NAMES})
    assert list(out["table4"]) == ["clean", *PAPER_FAMILIES, "ens"]
    assert all(list(r) == list(PAPER_FAMILIES) for r in out["table4"].values())
    assert set(out["table5"]) == set(SCENARIOS)
    diag = np.mean([mc[(plan.generators(FAMILY[t], t), t)] for t in NAMES])
    assert out["table5"]["true_family"] == pytest.approx(diag, abs=0.01)
    # Each job is needed: no generating set is planned twice.
    assert len({j.generators for j in plan.jobs}) == len(plan.jobs)
    assert sum(len(j.generators) for j in plan.jobs) == sum(len(g) for g in {j.generators for j in plan.jobs})
    assert len(list(itertools.chain.from_iterable(j.targets for j in plan.jobs))) >= len(NAMES) * 2


def _vgg_pair():
    from kennen.imagenet.offline import build, fold_vgg

    plain = build("vgg11", 7)
    folded = build("vgg11", 7)
    assert fold_vgg(folded) is not None and folded.classifier[0].in_features == 512
    return plain, folded


@pytest.mark.slow
def test_folded_vgg_computes_the_same_function():
    plain, folded = _vgg_pair()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(folded.eval()(x), plain.eval()(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="1x1 feature map"):
        folded(torch.randn(1, 3, 64, 64))


@pytest.mark.slow
def test_folded_vgg_trains_along_the_same_path_at_49x_the_learning_rate():
    from kennen.imagenet.offline import FOLD, optimiser

    plain, folded = _vgg_pair()
    opt_plain = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9)
    opt_folded = optimiser(folded, lr=0.01, momentum=0.9)
    assert [g["lr"] for g in opt_folded.param_groups] == [0.01, 0.01 * FOLD]
    gen = torch.Generator().manual_seed(1)
    for step in range(3):
        x, y = torch.randn(4, 3, 32, 32, generator=gen), torch.randint(0, 10, (4,), generator=gen)
        for model, opt in ((plain, opt_plain), (folded, opt_folded)):
            torch.manual_seed(step)  # the same dropout masks in both
            opt.zero_grad()
            nn.functional.cross_entropy(model.train()(x), y).backward()
            opt.step()
    x = torch.randn(5, 3, 32, 32, generator=gen)
    torch.testing.assert_close(folded.eval()(x), plain.eval()(x), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(
        folded.classifier[0].weight, plain.classifier[0].weight.view(4096, 512, FOLD).sum(-1), rtol=1e-4, atol=1e-4
    )
