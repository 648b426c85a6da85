"""Model families as data, and the probe's params (paper §7).

The paper's 19 torchvision ImageNet classifiers in 5 families. Every name is built
through ``torchvision.models.get_model``, so ``imagenet_probe.families`` in
params.yaml can add any torchvision classification model (e.g. ``mobilenet: [mobilenet_v2,
mobilenet_v3_small]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torchvision.models import list_models

from kennen.config import bounded, require
from kennen.imagenet.offline import Recipe
from kennen.metamodel.kennen_o import Optimiser

PAPER_FAMILIES: dict[str, tuple[str, ...]] = {
    "squeezenet": ("squeezenet1_0", "squeezenet1_1"),
    "vgg": ("vgg11", "vgg13", "vgg16", "vgg19"),
    "vgg_bn": ("vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"),
    "resnet": ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"),
    "densenet": ("densenet121", "densenet161", "densenet169", "densenet201"),
}
MODES = ("offline", "pretrained")
FEATURES = ("prob", "sorted")  # the paper's log-probabilities | each query's log-probabilities sorted (class-free)


@dataclass(frozen=True)
class OfflineParams:
    """The offline surrogate: the same torchvision classes, on small MNIST inputs, trained briefly."""

    image_size: int = 32  # MNIST digits padded to this size, grey copied to 3 channels
    seeds: int = bounded(100, 2)  # models per architecture (different initialisation and data order)
    steps: int = bounded(100_000, 20)  # SGD steps per model
    batch: int = bounded(100_000, 32)
    lr: float = 0.01
    momentum: float = 0.9
    pool: int = 1000  # query images: the first ``pool`` MNIST test images, fixed

    @property
    def recipe(self) -> Recipe:
        return Recipe(self.image_size, self.steps, self.batch, self.lr, self.momentum)

    def check(self, where: str) -> None:
        require(self.image_size >= 32, f"{where}.image_size", f"must be at least 32 (VGG and DenseNet downsample 32x), got {self.image_size}")  # fmt: skip
        require(self.seeds >= 1, f"{where}.seeds", f"must be at least 1, got {self.seeds}")
        require(self.steps >= 0 and self.batch >= 1, where, "steps must be >= 0 and batch >= 1")
        require(self.lr > 0, f"{where}.lr", f"must be positive, got {self.lr}")
        require(1 <= self.pool <= 10_000, f"{where}.pool", f"must be within 1..10000, got {self.pool}")


@dataclass(frozen=True)
class PretrainedParams:
    """The paper's experiment: torchvision's ImageNet weights, natural query images."""

    image_dir: str = ""  # a folder of natural images (the paper: ImageNet validation images)
    pool: int = 1000  # images used, the first ``pool`` files in sorted order
    download: bool = True  # fetch missing weights through torchvision (needs internet)
    classes: int = 1000  # the metamodel reads the probabilities of the first ``classes`` ImageNet classes

    def check(self, where: str) -> None:
        require(self.pool >= 1, f"{where}.pool", f"must be at least 1, got {self.pool}")
        require(1 <= self.classes <= 1000, f"{where}.classes", f"must be within 1..1000, got {self.classes}")


@dataclass(frozen=True)
class ProbeParams:
    """``imagenet_probe`` section of params.yaml."""

    mode: str = "offline"
    families: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(PAPER_FAMILIES))
    n_queries: tuple[int, ...] = bounded(10_000, (10, 100, 1000))
    features: tuple[str, ...] = ("prob",)  # the first is the headline; the others are reported next to it
    folds: int = bounded(1_000, 10)  # paper: 10 cross-validations, one held-out model per family each
    draws: int = bounded(1_000, 10)  # paper: 10 random query draws per fold
    hidden: int = bounded(10_000, 1000)
    optimiser: Optimiser = field(default_factory=lambda: Optimiser("adam", 1e-3, weight_decay=1e-3, batch=100))
    offline: OfflineParams = field(default_factory=OfflineParams)
    pretrained: PretrainedParams = field(default_factory=PretrainedParams)

    def check(self, where: str) -> None:
        require(self.mode in MODES, f"{where}.mode", f"expected one of {', '.join(MODES)}, got {self.mode!r}")
        require(len(self.families) >= 2, f"{where}.families", "needs at least two families")
        known = set(list_models())
        for family, names in self.families.items():
            require(len(names) >= 2, f"{where}.families.{family}", "needs at least two models (one is held out)")
            for name in names:
                require(name in known, f"{where}.families.{family}", f"{name!r} is not a torchvision model")
        all_names = [n for names in self.families.values() for n in names]
        require(len(set(all_names)) == len(all_names), f"{where}.families", "a model is listed twice")
        require(
            bool(self.n_queries) and all(n >= 1 for n in self.n_queries), f"{where}.n_queries", "values must be >= 1"
        )
        require(self.folds >= 1 and self.draws >= 1, where, "folds and draws must be at least 1")
        require(bool(self.features), f"{where}.features", "needs at least one feature")
        for f in self.features:
            require(f in FEATURES, f"{where}.features", f"{f!r} is not one of {', '.join(FEATURES)}")
        require(self.hidden >= 1, f"{where}.hidden", f"must be at least 1, got {self.hidden}")
        self.optimiser.check(f"{where}.optimiser")

    def models(self) -> list[tuple[str, str]]:
        """(family, torchvision name) of every architecture, in params order."""
        return [(family, name) for family, names in self.families.items() for name in names]
