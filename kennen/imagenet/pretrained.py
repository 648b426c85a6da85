"""The paper's experiment: torchvision's pretrained ImageNet classifiers answering natural images.

Weights come through torchvision's weights API (``get_model_weights(name).DEFAULT``):
found in ``$TORCH_HOME/hub/checkpoints`` (torch's cache), or downloaded there when
``download`` is on and the machine has internet. Files are read with
``torch.load(..., weights_only=True)``. Query images are the first ``pool`` image
files of a folder (the paper: ImageNet validation images), preprocessed with the
weights' own transforms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.models import get_model, get_model_weights

from kennen.errors import KennenError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".JPEG", ".JPG", ".PNG"}


def checkpoint_path(name: str) -> Path:
    """Where torch's hub cache keeps the default weights of ``name``."""
    url = get_model_weights(name).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_pretrained(name: str, download: bool) -> torch.nn.Module:
    """The pretrained model ``name`` in eval mode; a one-line KennenError when its weights are missing."""
    weights = get_model_weights(name).DEFAULT
    path = checkpoint_path(name)
    how = (
        f"download {weights.url} to {path} on a machine with internet "
        f"(or set TORCH_HOME to a folder that holds hub/checkpoints/{path.name})"
    )
    if not path.is_file():
        if not download:
            raise KennenError(f"imagenet_probe.pretrained: weights of {name} not found at {path}; {how}")
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = path.stem.rsplit("-", 1)[-1]  # torchvision names files <name>-<sha256 prefix>.pth
        try:
            torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=digest, progress=False)
        except Exception as e:  # noqa: BLE001 - any network failure gets the same advice
            raise KennenError(
                f"imagenet_probe.pretrained: cannot download the weights of {name} ({e}); {how}"
            ) from None
    model = get_model(name, weights=None)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign file
        raise KennenError(
            f"{path}: not the weights of {name} ({type(e).__name__}); delete it and fetch it again"
        ) from None
    return model.eval()


def read_images(folder: str, pool: int) -> list[torch.Tensor]:
    """The first ``pool`` images of ``folder`` (sorted by name), decoded as uint8 RGB [3, H, W]."""
    if not folder:
        raise KennenError(
            "imagenet_probe.pretrained.image_dir: empty; point it at a folder of natural images "
            "(the paper: ImageNet validation images, https://image-net.org)"
        )
    files = sorted(p for p in Path(folder).glob("*") if p.suffix in IMAGE_SUFFIXES) if Path(folder).is_dir() else []
    if not files:
        raise KennenError(f"imagenet_probe.pretrained.image_dir: no .jpg/.jpeg/.png images in {folder!r}")
    return [decode_image(str(f), mode=ImageReadMode.RGB) for f in files[:pool]]


def answer(name: str, images: list[torch.Tensor], download: bool, classes: int, batch: int = 50) -> np.ndarray:
    """Log-probabilities [P, classes] of the pretrained ``name`` on ``images``, preprocessed by its weights' transforms."""
    model = load_pretrained(name, download)
    transform = get_model_weights(name).DEFAULT.transforms()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.stack([transform(img) for img in images[i : i + batch]])
            out.append(torch.log_softmax(model(x), 1)[:, :classes])
    return torch.cat(out).numpy().astype(np.float32)
