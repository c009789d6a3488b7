"""Tiny stand-ins for the weak-supervision inputs: L2A patches whose NIR says water, vegetation or
dry land, and a class-folder tree whose classes include a water class (SeaLake)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.training.test_train import make_class_tree

# Reflectance x 10,000 per band (B02, B03, B04, B08): what Sentinel-2 L2A shows of each surface.
SURFACES = {
    "water": (600, 800, 500, 150),  # NDWI (800 - 150) / 950 = 0.68 everywhere
    "vegetation": (300, 600, 300, 3500),  # NDVI 0.84, NDWI -0.71
    "dry": (1500, 1800, 2000, 2500),  # bare soil: NDVI 0.11, NDWI -0.16
}
# Classes and mean RGB of a tiny tree that names EuroSAT's water and built-up classes.
TREE_COLORS = {"SeaLake": (30, 60, 200), "Forest": (20, 140, 30), "Residential": (200, 90, 80)}


def surface_patch(kind: str, side: int = 16, rng: np.random.Generator | None = None) -> np.ndarray:
    """One (4, side, side) uint16 patch of ``kind`` with a little noise."""
    rng = rng or np.random.default_rng(0)
    values = np.asarray(SURFACES[kind], dtype=np.float32)[:, None, None]
    return np.clip(values + rng.normal(0, 20, (4, side, side)), 0, None).astype(np.uint16)


def mixed_patch(side: int = 16) -> np.ndarray:
    """A shore: a third of the pixels water, the rest soil. NIR says nothing certain about it."""
    patch = surface_patch("dry", side)
    patch[:, : side // 3] = surface_patch("water", side)[:, : side // 3]
    return patch


def write_patches(path: Path, patches: list[np.ndarray]) -> Path:
    """An .npz laid out like ../shared/data/l2a_unlabelled: patches (N, 4, H, W), bands, names."""
    np.savez(
        path,
        patches=np.stack(patches),
        bands=np.array(["B02", "B03", "B04", "B08"]),
        names=np.array([f"test_{i}.npy" for i in range(len(patches))]),
    )
    return path


def weak_npz(path: Path, per_kind: int = 4, side: int = 16) -> Path:
    """Patches of every kind at even and odd positions alike (the fit half is the even one)."""
    rng = np.random.default_rng(1)
    patches = [surface_patch(kind, side, rng) for kind in SURFACES for _ in range(2 * per_kind)]
    return write_patches(path, patches)


def make_tree(root: Path, per_class: int = 6, size: int = 32, seed: int = 0) -> Path:
    """One folder of noisy, single-colour PNGs per class of TREE_COLORS."""
    return make_class_tree(root, per_class, size, seed, colors=TREE_COLORS)
