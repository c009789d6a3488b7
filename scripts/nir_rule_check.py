"""Measure the near-infrared water rule (core/classify/evidence.py) for results/l2a/nir_rule.md.

On the real L2A patches (weak labels from NIR, as ``python -m training spectral-check``): what
the bundled model calls clear water and dense vegetation with and without the rule, how many
water pixels the patches hold (the rule's threshold), and what the reverse rule (open water
cannot be Forest) would change. On the Demmin scene: the class shares of the whole scene and of
the wheat box at strides 64 and 16, with and without the rule, run as the plugin runs.

    PYTHONPATH=. python scripts/nir_rule_check.py --patches P.npz --scene D.tif --out results/l2a/nir_rule.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from rs_ghost_qgis.core.classify import evidence
from rs_ghost_qgis.core.model.runtime import load_model
from rs_ghost_qgis.core.radiometry.plan import reflectance_plan
from training import l2a

FARMLAND = ("AnnualCrop", "PermanentCrop", "Pasture", "HerbaceousVegetation")


def patch_shares(patches: np.ndarray, bands: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each patch's share of water and vegetated pixels, by the plugin's own functions."""
    size = patches.shape[-1]
    green, red, nir = (patches[:, bands.index(name)] for name in ("B03", "B04", "B08"))
    water, vegetated = [], []
    for g, r, n in zip(green, red, nir, strict=True):
        valid = np.ones(g.shape, dtype=bool)
        w, v = evidence.pixel_masks(g, r, n, valid)
        water.append(evidence.tile_shares(w, valid, size, size)[0])
        vegetated.append(evidence.tile_shares(v, valid, size, size)[0])
    return np.array(water), np.array(vegetated)


def patch_report(patches_path: str) -> dict:
    """The spectral check with and without the rule, the threshold's evidence and the reverse rule."""
    patches, bands = l2a.load_patches(patches_path)
    model = load_model(None)
    card = model.card
    plan = reflectance_plan(card, "l2a")
    channels = [bands.index(l2a.patch_band(band)) for band in card.bands]
    probs = np.concatenate(
        [
            model.predict(np.stack([plan.normalise(p[channels]) for p in patches[i : i + 64]]))
            for i in range(0, len(patches), 64)
        ]
    )
    water_share, _ = patch_shares(patches, bands)
    labels = l2a.weak_labels(patches, bands)
    ruled = evidence.apply_water_rule(probs, water_share, evidence.water_class_ids(card.class_names))
    names = np.array(card.class_names)
    _, held_out = l2a.fit_split(len(patches))
    held = np.isin(np.arange(len(patches)), held_out)
    report = {"patches": len(patches)}
    for label, p in (("network", probs), ("with rule", ruled)):
        top = names[p.argmax(1)]
        report[label] = {
            split: {
                "water_to_water": float(np.isin(top[labels["water"] & m], l2a.WATER_CLASSES).mean()),
                "vegetation_to_water_or_built": float(
                    np.isin(top[labels["vegetation"] & m], l2a.WATER_CLASSES + l2a.BUILT_CLASSES).mean()
                ),
                "vegetation_to_water": float(np.isin(top[labels["vegetation"] & m], l2a.WATER_CLASSES).mean()),
                "called_water": int(np.isin(top[m], l2a.WATER_CLASSES).sum()),
            }
            for split, m in (("all", np.ones(len(top), bool)), ("held_out", held))
        }
    network_top, ruled_top = probs.argmax(1), ruled.argmax(1)
    changed = network_top != ruled_top
    veg, clear = labels["vegetation"], labels["water"]
    report["threshold"] = {
        "water_pixels_in_dense_vegetation": {
            "patches": int(veg.sum()),
            "max": float(water_share[veg].max()),
            "below_min_share": int((water_share[veg] < evidence.WATER_MIN_SHARE).sum()),
        },
        "water_pixels_in_clear_water": {"patches": int(clear.sum()), "min": float(water_share[clear].min())},
        "network_water_patches_without_water_pixels": int(
            (np.isin(names[network_top], l2a.WATER_CLASSES) & (water_share < evidence.WATER_MIN_SHARE)).sum()
        ),
        "changed": int(changed.sum()),
        "changed_to": _counts(names[ruled_top[changed]]),
        "changed_clear_water": int(changed[clear].sum()),
    }
    report["reverse"] = reverse_rule(probs, water_share, patches, bands, names, clear)
    confidence = ruled.max(1)
    wrong_veg = veg & np.isin(names[ruled_top], l2a.WATER_CLASSES + l2a.BUILT_CLASSES)
    report["doubt"] = {
        "all_patches_below": float((confidence < evidence.DEFAULT_MIN_CONFIDENCE).mean()),
        "wrong_vegetation_below": float((confidence[wrong_veg] < evidence.DEFAULT_MIN_CONFIDENCE).mean()),
        "right_clear_water_below": float(
            (confidence[clear & np.isin(names[ruled_top], l2a.WATER_CLASSES)] < evidence.DEFAULT_MIN_CONFIDENCE).mean()
        ),
    }
    return report


def reverse_rule(probs, water_share, patches, bands, names, clear) -> dict:
    """What taking Forest out of open-water tiles (>= 90 % water pixels) would change."""
    forest = list(names).index("Forest")
    open_water = water_share >= 0.9
    called_forest = open_water & (probs.argmax(1) == forest)
    without = probs.copy()
    without[:, forest] = 0
    nir = patches[:, bands.index("B08")].mean(axis=(1, 2))
    ndwi = evidence.normalised_difference(patches[:, bands.index("B03")], patches[:, bands.index("B08")])
    strict = (ndwi > l2a.WATER_NDWI).mean(axis=(1, 2)) >= l2a.COVER
    return {
        "open_water_patches": int(open_water.sum()),
        "called_forest": int(called_forest.sum()),
        "called_forest_clear_water": int((called_forest & clear).sum()),
        "called_forest_mean_nir_median": float(np.median(nir[called_forest])),
        "called_forest_strict_clear_water": int((called_forest & strict).sum()),
        "next_class": _counts(names[without[called_forest].argmax(1)]),
    }


def scene_report(scene: str) -> list[dict]:
    """Whole-scene and wheat-box class shares at strides 64 and 16, with and without the rule."""
    from rs_ghost_qgis.core.classify.pipeline import ClassifyOptions, classify
    from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for stride in (64, 16):
            for rule in (False, True):
                tiles = Path(folder) / f"s{stride}_{rule}.gpkg"
                options = ClassifyOptions(stride=stride, water_rule=rule, out_vector=str(tiles))
                with RasterioSource(scene) as source:
                    result = classify(source, options)
                box = l2a.tiles_within(tiles, l2a.DEMMIN_WHEAT_BOX, l2a.DEMMIN_WHEAT_CRS)
                total = sum(box.values())
                rows.append(
                    {
                        "stride": stride,
                        "water_rule": rule,
                        "scene_percent": {a.class_name: round(a.percent, 1) for a in result.areas if a.found},
                        "scene_tiles": {a.class_name: a.tiles for a in result.areas if a.tiles},
                        "box_tiles": total,
                        "box_farmland": sum(box.get(n, 0) for n in FARMLAND) / total,
                        "box_water": sum(box.get(n, 0) for n in l2a.WATER_CLASSES) / total,
                        "box_classes": box,
                        "evidence": result.evidence.lines(),
                    }
                )
    return rows


def _counts(names: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(names, return_counts=True)
    return {str(v): int(c) for v, c in sorted(zip(values, counts, strict=True), key=lambda vc: -vc[1])}


def main() -> None:
    """Run both measurements and write them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", required=True)
    parser.add_argument("--scene", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    report = {"patches": patch_report(args.patches), "scene": scene_report(args.scene)}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
