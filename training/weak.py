"""Weak supervision from near infrared: real Sentinel-2 L2A patches teach the RGB network what
real water, vegetation and dry land look like.

EuroSAT's images are L1C top-of-atmosphere values; users bring L2A surface reflectance, where a
dark, uniform June wheat field has Pasture's colour and the smoothness of water or forest. The
unlabelled L2A patches (``../shared/data/l2a_unlabelled``) carry near infrared, which the RGB
network never sees, and NIR gives physical labels that need no annotator:

- ``water``: at least 90 % of the pixels have NDWI > 0.2 (training.l2a.weak_labels: clear water)
  -> a water class;
- ``dark_water``: at least 90 % have NDWI > 0 and the mean near infrared is below 3 % reflectance
  (no land cover is that dark in NIR and greener than it; 230 more in the fit half, against 12
  clear) -> a water class. Not used by default: dark, smooth water taught the RGB network that
  dark, smooth L2A is water, and the Demmin wheat went to SeaLake (results/l2a/weak_probes);
- ``vegetation``: at least 90 % have NDVI > 0.6 -> neither water nor built-up;
- ``dry``: not one pixel has NDWI > 0 -> not a water class (a river or lake tile shows water).

Each label is a set of allowed classes; the loss of a patch is minus the log of the probability
the network gives that set. The patches go through the same per-band L2A curves that the model
card then carries (training.l2a.fit_mapping, fitted on the same half of the patches), so the
network learns on exactly the values the plugin will feed it. Only the fit half
(training.l2a.fit_split) is trained on: the other half stays for ``spectral-check``.

The patches share the forward pass with the labelled batch. A separate pass in training mode
would move BatchNorm's running statistics to L2A alone (a probe fell to 62 % validation so).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from training import l2a
from training.data.loader import VIEWS, dihedral
from training.errors import TrainingError

KINDS = ("water", "dark_water", "vegetation", "dry")
DEFAULT_KINDS = ("water", "vegetation", "dry")
DRY_NDWI = 0.0  # a pixel with NDWI above this may be water; a dry patch has none
DARK_NIR = 300.0  # reflectance x 10,000: water absorbs near infrared; vegetation and soil reflect 2,000+
MAPPING_METHOD = "linear"  # the method `training l2a-fit` defaults to and the shipped cards carry


@dataclass
class WeakPatches:
    """The weakly labelled L2A patches a run trains on.

    ``images`` float32 (N, C, H, W) in 0..1 as the network's training images; ``allowed`` bool
    (N, classes): the classes each patch may be; ``kind`` (N,) indexes KINDS; ``info`` goes into
    the checkpoint and the model card (source, counts, the L2A curves used).
    """

    images: torch.Tensor
    allowed: torch.Tensor
    kind: np.ndarray
    info: dict[str, Any]

    def draw(
        self, count: int, generator: torch.Generator, contrast: float = 0.0, brightness: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` patches, the same number of each kind present, each in a random flip or turn,
        its texture and brightness jittered (``jitter_texture``)."""
        kinds = [k for k in range(len(KINDS)) if (self.kind == k).any()]
        shares = np.full(len(kinds), count // len(kinds))
        shares[: count % len(kinds)] += 1
        picked = []
        for k, share in zip(kinds, shares, strict=True):
            members = torch.from_numpy(np.flatnonzero(self.kind == k))
            picked.append(members[torch.randint(len(members), (int(share),), generator=generator)])
        index = torch.cat(picked)
        views = torch.randint(VIEWS, (len(index),), generator=generator)
        images = dihedral(self.images[index].clone(), views)
        return jitter_texture(images, contrast, brightness, generator), self.allowed[index]


def jitter_texture(
    images: torch.Tensor, contrast: float, brightness: float, generator: torch.Generator
) -> torch.Tensor:
    """Each patch's texture amplitude times U(1 - ``contrast``, 1 + ``contrast``) about its own mean,
    and all its bands moved by U(-``brightness``, ``brightness``) on 0..255; values stay in 0..1.

    A near-infrared label does not depend on how rough or how bright a patch looks in RGB, but the
    network's water and forest calls do (issue 32: a smooth, dark June wheat field went to SeaLake
    and Forest, and contrast x 0.8 or brightness + 20 alone turned most of it SeaLake). Jittering
    only the weakly labelled patches teaches that invariance where the label is physical.
    """
    if not contrast and not brightness:
        return images
    shape = (len(images), 1, 1, 1)
    scale = 1 + contrast * (2 * torch.rand(shape, generator=generator) - 1)
    shift = brightness / 255 * (2 * torch.rand(shape, generator=generator) - 1)
    mean = images.mean(dim=(2, 3), keepdim=True)
    return ((images - mean) * scale + mean + shift).clamp(0, 1)


def class_groups(class_names: list[str]) -> dict[str, np.ndarray]:
    """Per kind of weak label, the classes a patch of that kind may be (bool over ``class_names``)."""
    names = np.array(class_names)
    water = np.isin(names, l2a.WATER_CLASSES)
    if not water.any():
        raise TrainingError(
            f"--weak-patches needs a water class named {' or '.join(l2a.WATER_CLASSES)} among the classes "
            f"({', '.join(class_names)}); drop --weak-patches for data without one."
        )
    built = np.isin(names, l2a.BUILT_CLASSES)
    return {"water": water, "dark_water": water, "vegetation": ~water & ~built, "dry": ~water}


def label_patches(patches: np.ndarray, bands: list[str]) -> np.ndarray:
    """Each patch's kind (index into KINDS) or -1 when NIR says nothing certain; the first kind that holds wins."""
    labels = l2a.weak_labels(patches, bands)
    green, nir = (patches[:, bands.index(name)] for name in ("B03", "B08"))
    with np.errstate(divide="ignore", invalid="ignore"):
        wet = np.nan_to_num((green - nir) / (green + nir)) > DRY_NDWI
    dark_water = (wet.mean(axis=(1, 2)) >= l2a.COVER) & (nir.mean(axis=(1, 2)) < DARK_NIR)
    dry = wet.sum(axis=(1, 2)) == 0
    kind = np.full(len(patches), -1)
    for index, chosen in reversed(list(enumerate((labels["water"], dark_water, labels["vegetation"], dry)))):
        kind[chosen] = index
    return kind


def load_weak_patches(
    path: str | Path,
    class_names: list[str],
    card_bands: list[str],
    train_images: np.ndarray,
    kinds: tuple[str, ...] | list[str] = DEFAULT_KINDS,
) -> WeakPatches:
    """The fit half of the L2A patches at ``path`` that NIR labels as one of ``kinds``, mapped onto the
    training images' values.

    ``train_images`` is the training split, uint8 (N, H, W, C) in the order of ``card_bands``.
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise TrainingError(f"--weak-kinds {' '.join(kinds)}: choose one or more of {', '.join(KINDS)}.")
    groups = class_groups(class_names)
    patches, bands = l2a.load_patches(path)
    fit, _ = l2a.fit_split(len(patches))
    patches = patches[fit]
    source = f"{Path(path).name}, patches {l2a.FIT_PARITY}, {l2a.FIT_PARITY + 2}, ... ({len(fit)} of {len(fit) * 2})"
    mapping = l2a.fit_mapping(patches, bands, card_bands, train_images, source, MAPPING_METHOD)
    kind = label_patches(patches, bands)
    keep = np.isin(kind, [KINDS.index(name) for name in kinds])
    images = torch.from_numpy(l2a.apply_mapping(patches[keep], bands, mapping, 255.0))
    side = train_images.shape[1]
    if images.shape[-1] != side:  # the network trains on the data's image size
        images = F.interpolate(images, size=(side, side), mode="area")
    kind = kind[keep]
    allowed = torch.from_numpy(np.stack([groups[KINDS[k]] for k in kind]))
    counts = {name: int((kind == k).sum()) for k, name in enumerate(KINDS) if name in kinds}
    info = {"source": source, "patches": counts, "mapping": mapping, "rules": rules_text(kinds)}
    return WeakPatches(images.contiguous(), allowed, kind, info)


def rules_text(kinds: tuple[str, ...] | list[str] = DEFAULT_KINDS) -> str:
    """The weak labels of ``kinds`` in one line, for logs and the model card."""
    water = " or ".join(l2a.WATER_CLASSES)
    rules = {
        "water": f"water: >= {l2a.COVER:.0%} of pixels NDWI > {l2a.WATER_NDWI} -> {water}",
        "dark_water": f"dark_water: >= {l2a.COVER:.0%} NDWI > {DRY_NDWI} and mean B08 < {DARK_NIR:g} -> {water}",
        "vegetation": f"vegetation: >= {l2a.COVER:.0%} NDVI > {l2a.VEGETATION_NDVI} -> not water, not built-up",
        "dry": f"dry: no pixel NDWI > {DRY_NDWI} -> not water",
    }
    return "; ".join(rules[kind] for kind in KINDS if kind in kinds)


def weak_loss(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Mean over patches of -log p(allowed classes), computed in log space (no log of 0)."""
    logits = logits.float()
    allowed_logits = logits.masked_fill(~allowed, float("-inf"))
    return (torch.logsumexp(logits, dim=1) - torch.logsumexp(allowed_logits, dim=1)).mean()
