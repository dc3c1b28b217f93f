"""The 1000 ImageNet-1k class names, in class-index order, shared by every model.

Every model in the catalog is trained on ImageNet-1k with the same class order, so one list
serves them all and the same photo gets the same label text whichever model answers. The file
is torchvision's own category list (``torchvision.models._meta._IMAGENET_CATEGORIES``); a test
checks the two stay identical.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

NUM_CLASSES = 1000


@cache
def imagenet_labels() -> tuple[str, ...]:
    text = resources.files("hw5kit.serving").joinpath("imagenet_labels.txt").read_text("utf-8")
    labels = tuple(line for line in text.splitlines() if line)
    if len(labels) != NUM_CLASSES:
        raise RuntimeError(f"imagenet_labels.txt has {len(labels)} labels, expected 1000")
    return labels
