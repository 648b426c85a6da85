"""The ImageNet family probe: families as data, the folds, the pretrained path offline, the stages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torchvision.io import write_png
from torchvision.models import get_model, get_model_builder, get_model_weights

from kennen.config import from_dict, load_params, section
from kennen.errors import KennenError
from kennen.imagenet import pretrained
from kennen.imagenet.attack import SCENARIOS
from kennen.imagenet.families import PAPER_FAMILIES, ProbeParams
from kennen.imagenet.offline import to_rgb
from kennen.imagenet.probe import folds, summarise
from kennen.imagenet.run_zoo import ZooParams
from stages import imagenet_attack, imagenet_probe, imagenet_zoo
from tests.conftest import REPO, synthetic_mnist

SMALL = {"squeezenet": ["squeezenet1_0", "squeezenet1_1"], "resnet": ["resnet18", "resnet34"]}


def test_every_paper_model_resolves_through_torchvision():
    assert sum(len(v) for v in PAPER_FAMILIES.values()) == 19
    for names in PAPER_FAMILIES.values():
        for name in names:
            assert callable(get_model_builder(name))
            assert get_model_weights(name).DEFAULT.url.endswith(".pth")


def test_params_validation():
    with pytest.raises(KennenError, match=r"imagenet_probe.families.vgg: 'vgg12' is not a torchvision model"):
        from_dict(ProbeParams, {"families": {"vgg": ["vgg11", "vgg12"], "resnet": ["resnet18", "resnet34"]}},
                  "imagenet_probe")  # fmt: skip
    with pytest.raises(KennenError, match=r"imagenet_probe.families.vgg: needs at least two models"):
        from_dict(ProbeParams, {"families": {"vgg": ["vgg11"], "resnet": ["resnet18"]}}, "imagenet_probe")
    with pytest.raises(KennenError, match=r"imagenet_probe.mode: expected one of offline, pretrained"):
        from_dict(ProbeParams, {"mode": "online"}, "imagenet_probe")
    assert from_dict(ProbeParams, {}, "imagenet_probe").families == PAPER_FAMILIES
    with pytest.raises(KennenError, match=r"imagenet_zoo.train_pool: must be within 1..60000, got 0"):
        from_dict(ZooParams, {"train_pool": 0}, "imagenet_zoo")
    for name in ("params.yaml", "profiles/quick.yaml", "profiles/paper.yaml"):  # one value everywhere
        assert section(ZooParams, load_params(REPO / name), "imagenet_zoo").train_pool == 12_000, name


@pytest.mark.parametrize("seeds", [1, 3])
def test_each_fold_holds_out_exactly_one_model_per_family(seeds):
    families = list(PAPER_FAMILIES)
    archs = [a for names in PAPER_FAMILIES.values() for a in names for _ in range(seeds)]
    fams = [f for f, names in PAPER_FAMILIES.items() for _ in names for _ in range(seeds)]
    seen_test_archs = set()
    for fold in folds(families, archs, fams, 10, seed=3):
        assert [fams[i] for i in fold.test] == families  # exactly one per family, in family order
        held = {archs[i] for i in fold.test}
        assert not set(fold.train) & set(fold.test)
        assert not {archs[i] for i in fold.train} & held  # the test architectures are unseen in training
        assert len(fold.train) == (19 - 5) * seeds
        seen_test_archs |= held
    assert len(seen_test_archs) > 5  # folds differ
    assert folds(families, archs, fams, 10, seed=3) == folds(families, archs, fams, 10, seed=3)


def test_summarise_counts_per_family():
    results = [{"n": 10, "true": [0, 1], "pred": [0, 0]}, {"n": 10, "true": [0, 1], "pred": [0, 1]}]
    (row,), cms = summarise(results, ["a", "b"])
    assert row["acc"] == 75.0 and row["acc.a"] == 100.0 and row["acc.b"] == 50.0
    assert cms[10].tolist() == [[2, 0], [1, 1]]


def test_to_rgb_pads_and_copies_channels():
    x = to_rgb(np.full((2, 28, 28), 255, dtype=np.uint8), 32)
    assert x.shape == (2, 3, 32, 32) and torch.equal(x[:, 0], x[:, 2])
    assert float(x[0, 0, 0, 0]) < 0 < float(x[0, 0, 16, 16])  # padding is black, the digit area white


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty TORCH_HOME, and no way for torch to download anything."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to download weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return home


def place_stand_in(name: str, seed: int) -> dict[str, torch.Tensor]:
    """Locally made weights where torchvision's cache would keep the real ones."""
    torch.manual_seed(seed)
    state = get_model(name, weights=None).state_dict()
    path = pretrained.checkpoint_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_pretrained_loads_stand_in_weights_from_torch_home(torch_home):
    state = place_stand_in("squeezenet1_1", seed=5)
    assert str(pretrained.checkpoint_path("squeezenet1_1")).startswith(str(torch_home))
    model = pretrained.load_pretrained("squeezenet1_1", download=False)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert not model.training


def test_missing_weights_give_a_one_line_error(torch_home):
    with pytest.raises(KennenError) as e:
        pretrained.load_pretrained("resnet18", download=False)
    message = str(e.value)
    assert "\n" not in message and "weights of resnet18 not found" in message
    assert get_model_weights("resnet18").DEFAULT.url in message and "TORCH_HOME" in message


def test_missing_images_give_a_one_line_error(tmp_path):
    with pytest.raises(KennenError, match="image_dir: empty"):
        pretrained.read_images("", 10)
    with pytest.raises(KennenError, match="no .jpg/.jpeg/.png images"):
        pretrained.read_images(str(tmp_path), 10)


def run_stages(tmp_path, params: dict, capsys) -> dict:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    np.savez(tmp_path / "mnist.npz", **synthetic_mnist(n_train=300, n_test=60))
    common = ["--params", str(tmp_path / "params.yaml")]
    assert imagenet_zoo.main([*common, "--data", str(tmp_path / "mnist.npz"), "--out-dir", str(tmp_path / "zoo")]) == 0
    code = imagenet_probe.main(
        [*common, "--zoo", str(tmp_path / "zoo"), "--metrics", str(tmp_path / "probe.json"),
         "--plots", str(tmp_path / "plots"), "--figures", str(tmp_path / "figures")]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    code = imagenet_attack.main(
        [*common, "--data", str(tmp_path / "mnist.npz"), "--zoo", str(tmp_path / "zoo"),
         "--metrics", str(tmp_path / "attack.json"), "--plots", str(tmp_path / "attack_plots"),
         "--figures", str(tmp_path / "attack_figures")]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    return json.loads((tmp_path / "probe.json").read_text())


def check_attack(tmp_path, mode: str, n_images: int) -> None:
    """The attack stage's smoke run: both tables, every cell a rate, the probe's predictions, the heatmap."""
    attack = json.loads((tmp_path / "attack.json").read_text())
    assert attack["mode"] == mode and attack["images"] == n_images and attack["targets"] == 4
    fams = list(SMALL)
    assert set(attack["table4"]) == {"clean", *fams, "ens"} and set(attack["table5"]) == set(SCENARIOS)
    assert all(set(row) == set(fams) and all(0 <= v <= 100 for v in row.values()) for row in attack["table4"].values())
    for row in attack["fooled"]["table4"].values():  # null where a family's targets get every clean image wrong
        assert set(row) == set(fams) and all(v is None or 0 <= v <= 100 for v in row.values())
    per = attack["per_target"]
    assert set(per) == {m for ms in SMALL.values() for m in ms} and all(p["predicted"] in fams for p in per.values())
    assert attack["probe"]["right"] == sum(p["predicted"] == p["family"] for p in per.values())
    assert (tmp_path / "attack_figures/table4.png").stat().st_size > 1000
    assert (tmp_path / "attack_plots/table5.csv").read_text().startswith("scenario,misclassification,paper")


def tiny(mode: str, **extra) -> dict:
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    probe = base["imagenet_probe"] | {
        "mode": mode, "families": SMALL, "n_queries": [3, 6], "folds": 2, "draws": 2, "hidden": 8,
        "optimiser": {"name": "adam", "lr": 0.001, "batch": 4, "epochs": 2},
        "offline": base["imagenet_probe"]["offline"] | {"seeds": 2, "steps": 1, "batch": 4, "pool": 6},
    } | extra  # fmt: skip
    attack = {"eps": 0.1, "step": 0.05, "steps": 2, "images": 5, "probe_queries": 4}
    return {"seed": 1, "imagenet_zoo": base["imagenet_zoo"], "imagenet_probe": probe, "imagenet_attack": attack}


@pytest.mark.slow
def test_offline_stages_smoke(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")
    metrics = run_stages(tmp_path, tiny("offline"), capsys)
    assert metrics["mode"] == "offline" and "offline surrogate" in metrics["label"]
    assert metrics["n_models"] == 8 and metrics["n_architectures"] == 4 and metrics["chance"] == 50.0
    assert {"acc.n3", "acc.n6", "acc.n6.squeezenet", "acc.n6.resnet"} <= set(metrics)
    with np.load(tmp_path / "zoo/outputs.npz") as z:
        assert z["outputs"].shape == (8, 6, 10)
    assert (tmp_path / "figures/accuracy.png").stat().st_size > 1000
    assert (tmp_path / "plots/confusion.csv").read_text().startswith("actual,predicted")
    assert sorted(p.name for p in (tmp_path / "zoo/weights").iterdir()) == sorted(
        ["index.json", *(f"{m}.safetensors" for ms in SMALL.values() for m in ms)]
    )  # the seed-0 surrogates, for the attack
    check_attack(tmp_path, "offline", 5)


@pytest.mark.slow
def test_pretrained_stages_with_stand_in_weights(tmp_path, torch_home, monkeypatch, capsys):
    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")
    for i, names in enumerate(SMALL.values()):
        for j, name in enumerate(names):
            place_stand_in(name, seed=10 * i + j)
    images = tmp_path / "images"
    images.mkdir()
    gen = torch.Generator().manual_seed(0)
    for k in range(6):
        write_png(torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8, generator=gen), str(images / f"{k:02d}.png"))
    (tmp_path / "labels.csv").write_text("file,label\n" + "".join(f"{k:02d}.png,{7 * k}\n" for k in range(6)))
    params = tiny("pretrained", pretrained={"image_dir": str(images), "pool": 6, "download": False, "classes": 20})
    params["imagenet_attack"] |= {"labels": str(tmp_path / "labels.csv"), "images": 4}
    metrics = run_stages(tmp_path, params, capsys)
    check_attack(tmp_path, "pretrained", 4)
    assert metrics["mode"] == "pretrained" and "the paper's experiment" in metrics["label"]
    with np.load(tmp_path / "zoo/outputs.npz") as z:
        assert z["outputs"].shape == (4, 6, 20)


def test_download_goes_into_a_fresh_torch_home_with_the_hash_checked(torch_home, monkeypatch):
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        assert Path(dst).parent.is_dir()  # torch does not create hub/checkpoints itself
        calls.append((url, hash_prefix))
        torch.save(get_model("squeezenet1_1", weights=None).state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    pretrained.load_pretrained("squeezenet1_1", download=True)
    url = get_model_weights("squeezenet1_1").DEFAULT.url
    assert calls == [(url, url.rsplit("-", 1)[-1].removesuffix(".pth"))]
