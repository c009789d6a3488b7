"""Sentinel-2 L2A for an L1C-trained model: the per-band mapping it carries, and a spectral check.

EuroSAT's images are L1C top-of-atmosphere reflectance stretched 0..2750 -> 1..255. L2A surface
reflectance lacks the atmosphere's haze: under the same stretch it is dark and short of blue
(median blue 258 against 1,039 in EuroSAT). ``fit_mapping`` matches the quantiles of each band
of unlabelled L2A patches to those of the training images (histogram matching), giving one
monotone curve per band that the model card carries (``product_mappings['l2a']``) and the
plugin applies to L2A rasters.

``spectral_check`` scores a model on the L2A patches with weak labels from near infrared, which
the RGB model never sees: clear water (NDWI > 0.2 on 90 % of the pixels) must come out water,
and dense vegetation (NDVI > 0.6 on 90 %) must come out neither water nor built-up.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from rs_ghost_qgis.core import atomic
from rs_ghost_qgis.core.model.card import ModelCard
from rs_ghost_qgis.core.model.runtime import load_model
from rs_ghost_qgis.core.radiometry.bands import band_role
from rs_ghost_qgis.core.radiometry.plan import reflectance_plan
from rs_ghost_qgis.core.radiometry.scaling import reflectance_units
from training.errors import TrainingError, cannot_write

PATCH_BANDS = ("B02", "B03", "B04", "B08")
# The role of a card band (core.radiometry.band_role) -> the patches' band.
ROLE_TO_PATCH = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}
# Quantiles matched: dense in the middle, up to 0.1 % from either end (the extremes are a few
# clouds and deep shadows, too few to place a knot reliably).
QUANTILES = np.concatenate([[0.1, 0.5], np.arange(1.0, 100.0, 1.0), [99.5, 99.9]])
WATER_NDWI, VEGETATION_NDVI, COVER = 0.2, 0.6, 0.9
WATER_CLASSES = ("SeaLake", "River")
BUILT_CLASSES = ("Highway", "Industrial", "Residential")
FIT_PARITY = 0  # patches 0, 2, 4, ... fit the mapping; 1, 3, 5, ... are held out
BATCH = 64


def load_patches(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """The patches (N, bands, H, W) as float32 reflectance x 10,000 and their band names."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            patches, bands = archive["patches"], [str(band) for band in archive["bands"]]
    except (OSError, KeyError, ValueError) as error:
        raise TrainingError(
            f"--patches {path} is not an .npz with 'patches' (N, bands, H, W) and 'bands' ({error}); "
            "give ../shared/data/l2a_unlabelled/patches_b02_b03_b04_b08.npz or a file like it."
        ) from None
    missing = sorted(set(PATCH_BANDS) - set(bands))
    if missing or patches.ndim != 4 or patches.shape[1] != len(bands):
        raise TrainingError(f"--patches {path} lacks band(s) {', '.join(missing) or '?'} or is not (N, bands, H, W).")
    # The plugin's units rule: floats up to 1.5 are reflectance 0..1, read as x 10,000 like the rest.
    values = patches[np.isfinite(patches)] if np.issubdtype(patches.dtype, np.floating) else patches.ravel()
    gain, _ = reflectance_units(str(patches.dtype), values)
    if gain is None:
        span = f"range {values.min():g}..{values.max():g}" if values.size else "are none finite"
        raise TrainingError(
            f"--patches {path} does not hold reflectance (x 10,000, or 0..1 as float): its values {span}; "
            "give Sentinel-2 L2A surface reflectance."
        )
    return (patches.astype(np.float32) * np.float32(gain)), bands


def patch_band(card_band: str) -> str:
    """The patches' band that holds the card's band ``card_band`` (e.g. 'B04 red' -> 'B04')."""
    role = band_role(card_band)
    if role not in ROLE_TO_PATCH:
        raise TrainingError(
            f"the model's band '{card_band}' is none of red, green, blue or NIR; the L2A patches lack it."
        )
    return ROLE_TO_PATCH[role]


def weak_labels(patches: np.ndarray, bands: list[str]) -> dict[str, np.ndarray]:
    """Boolean masks (N,) of the clearly-water and the densely-vegetated patches."""
    green, red, nir = (patches[:, bands.index(name)] for name in ("B03", "B04", "B08"))
    with np.errstate(divide="ignore", invalid="ignore"):
        ndwi = np.nan_to_num((green - nir) / (green + nir))
        ndvi = np.nan_to_num((nir - red) / (nir + red))
    return {
        "water": (ndwi > WATER_NDWI).mean(axis=(1, 2)) >= COVER,
        "vegetation": (ndvi > VEGETATION_NDVI).mean(axis=(1, 2)) >= COVER,
    }


def fit_split(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the patches that fit the mapping and of those held out."""
    indices = np.arange(count)
    return indices[indices % 2 == FIT_PARITY], indices[indices % 2 != FIT_PARITY]


METHODS = ("linear", "quantile")
# The linear fit uses the middle of the distributions, where land cover, not rare clouds,
# water or shadows, sets the quantiles.
LINEAR_QUANTILES = (5.0, 95.0)
RAW_SPAN = (0.0, 10_000.0)  # the knots of a linear mapping: reflectance 0 and 1


def fit_mapping(
    patches: np.ndarray, bands: list[str], card_bands: list[str], train_images: np.ndarray, source: str, method: str
) -> dict[str, Any]:
    """The card's ``product_mappings['l2a']``: per card band, a curve from L2A values to training values.

    ``train_images`` is the training split as uint8 (N, H, W, C) in the order of ``card_bands``.
    ``method`` "quantile" matches every quantile (histogram matching: assumes the L2A patches hold
    the same mix of land cover as the training images); "linear" fits value = a + b x L2A to the
    quantile pairs between LINEAR_QUANTILES, a haze offset and a gain per band, which a different
    mix of land cover moves far less.
    """
    if method not in METHODS:
        raise TrainingError(f"--method {method} is unknown; choose one of {', '.join(METHODS)}.")
    curves = {}
    for channel, band in enumerate(card_bands):
        raw = np.percentile(patches[:, bands.index(patch_band(band))], QUANTILES)
        value = np.percentile(train_images[..., channel], QUANTILES)
        if method == "linear":
            middle = (LINEAR_QUANTILES[0] <= QUANTILES) & (LINEAR_QUANTILES[1] >= QUANTILES)
            gain, offset = np.polyfit(raw[middle], value[middle], 1)
            raw, value = np.array(RAW_SPAN), offset + gain * np.array(RAW_SPAN)
        raw, first = np.unique(np.round(raw, 1), return_index=True)  # ties (uint16 data) keep one knot
        curves[band] = {"raw": raw.tolist(), "value": np.round(value[first], 3).tolist()}
    described = {
        "linear": "a linear map per band (haze offset and gain) fitted to the L2A patches' and the training "
        f"images' quantiles {LINEAR_QUANTILES[0]:g}-{LINEAR_QUANTILES[1]:g} %",
        "quantile": "quantile matching of L2A patches to the training images, per band",
    }
    return {"method": described[method], "fitted_on": source, "bands": curves}


def apply_mapping(patches: np.ndarray, bands: list[str], mapping: dict[str, Any], value_top: float) -> np.ndarray:
    """L2A patches (N, bands, H, W) through ``mapping``'s curves, as the plugin applies them: float32
    (N, card bands, H, W) in 0..1 of ``value_top``, constant beyond the curves' ends."""
    mapped = [
        np.interp(patches[:, bands.index(patch_band(band))], curve["raw"], curve["value"])
        for band, curve in mapping["bands"].items()
    ]
    return (np.clip(np.stack(mapped, axis=1), 0.0, value_top) / value_top).astype(np.float32)


def spectral_check(model_path: str | Path, patches: np.ndarray, bands: list[str], product: str) -> dict[str, Any]:
    """What the model calls the weakly labelled L2A patches, mapped as the plugin maps ``product`` data."""
    model = load_model(model_path)
    card = model.card
    if product == "l2a" and not card.product_mappings.get("l2a"):
        raise TrainingError(f"{model_path} carries no L2A mapping; fit one with `python -m training l2a-fit`.")
    plan = reflectance_plan(card, product)
    channels = [bands.index(patch_band(band)) for band in card.bands]
    predicted = np.concatenate(
        [
            model.predict(np.stack([plan.normalise(patch[channels]) for patch in patches[i : i + BATCH]])).argmax(1)
            for i in range(0, len(patches), BATCH)
        ]
    )
    names = np.array(card.class_names)[predicted]
    fit, held_out = fit_split(len(patches))
    report: dict[str, Any] = {"model": Path(model_path).name, "product": product, "mapping": plan.scaling_note}
    for split, indices in (("all", np.arange(len(patches))), ("fit", fit), ("held_out", held_out)):
        labels = weak_labels(patches[indices], bands)
        report[split] = {
            "water": _group(names[indices][labels["water"]], WATER_CLASSES, want=True),
            "vegetation": _group(names[indices][labels["vegetation"]], WATER_CLASSES + BUILT_CLASSES, want=False),
        }
    return report


def _group(names: np.ndarray, classes: tuple[str, ...], *, want: bool) -> dict[str, Any]:
    hits = int(np.isin(names, classes).sum())
    counts = dict(zip(*np.unique(names, return_counts=True), strict=True)) if len(names) else {}
    return {
        "patches": len(names),
        "share": hits / len(names) if len(names) else None,
        "criterion": ("should be " if want else "should not be ") + " or ".join(classes),
        "classes": {str(name): int(count) for name, count in sorted(counts.items(), key=lambda kv: -kv[1])},
    }


def format_report(reports: list[dict[str, Any]]) -> str:
    """A markdown table: per model and mapping, clear water called water and vegetation called water/built-up."""
    lines = [
        "| model | product / mapping | water -> water (all) | held out | vegetation -> water or built-up (all) "
        "| held out |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for report in reports:
        cells = []
        for group in ("water", "vegetation"):
            for split in ("all", "held_out"):
                entry = report[split][group]
                cells.append(f"{100 * entry['share']:.1f} % of {entry['patches']}")
        lines.append(f"| {report['model']} | {report['product']}: {report['mapping']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# Inside the June wheat of the Demmin scene (EPSG:32633): the large dark-green fields, without
# the bare fields at the top and left, the village and the woods (docs/preview_demmin.png).
DEMMIN_WHEAT_BOX = (380_900.0, 5_971_600.0, 383_600.0, 5_973_300.0)
DEMMIN_WHEAT_CRS = "EPSG:32633"
# Farmland as issue 32 scores the wheat: every class a crop field may honestly be called.
FARMLAND_CLASSES = ("AnnualCrop", "PermanentCrop", "Pasture", "HerbaceousVegetation")


def tiles_within(tiles_gpkg: str | Path, box: tuple[float, float, float, float], crs: str) -> dict[str, int]:
    """Top class -> count of the classified tiles of a tile layer (classify's GeoPackage) lying wholly in ``box``."""
    import shapely
    from osgeo import ogr

    from rs_ghost_qgis.core.crs import to_wkt, transform_geometry

    area = shapely.box(*box)
    dataset = ogr.Open(str(tiles_gpkg))
    layer = dataset.GetLayer(0)
    layer_wkt = layer.GetSpatialRef().ExportToWkt()
    counts: dict[str, int] = {}
    for feature in layer:
        name = feature.GetField("class_name")
        geometry = shapely.from_wkb(bytes(feature.GetGeometryRef().ExportToIsoWkb()))
        if name and area.contains(transform_geometry(geometry, layer_wkt, to_wkt(crs))):
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def wheat_check(
    model_path: str | Path, scene: str | Path, product: str, folder: Path, *, water_rule: bool = True
) -> dict[str, Any]:
    """What the model calls the Demmin wheat (tiles wholly inside DEMMIN_WHEAT_BOX, stride 16), as the plugin runs.

    ``water_rule`` False scores the network alone, without the near-infrared rule (core.classify.evidence).
    """
    from rs_ghost_qgis.core.classify.pipeline import ClassifyOptions, classify
    from rs_ghost_qgis.core.crs import to_wkt
    from rs_ghost_qgis.core.options import Area
    from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource

    tiles = folder / f"{Path(model_path).stem}_{product}{'' if water_rule else '_no_rule'}.gpkg"
    area = Area(bounds=DEMMIN_WHEAT_BOX, crs_wkt=to_wkt(DEMMIN_WHEAT_CRS))
    options = ClassifyOptions(
        model_path=str(model_path),
        area=area,
        stride=16,
        product=product,
        out_vector=str(tiles),
        overwrite=True,
        water_rule=water_rule,
    )
    with RasterioSource(scene) as source:
        result = classify(source, options)
    counts = tiles_within(tiles, DEMMIN_WHEAT_BOX, DEMMIN_WHEAT_CRS)
    total = sum(counts.values())
    share = {name: count / total for name, count in counts.items()} if total else {}
    return {
        "model": Path(model_path).name,
        "product": product,
        "water_rule": water_rule,
        "scaling": result.scaling_used,
        "tiles": total,
        "farmland": sum(share.get(name, 0.0) for name in FARMLAND_CLASSES),
        "water": sum(share.get(name, 0.0) for name in WATER_CLASSES),
        "classes": counts,
    }


def format_wheat(reports: list[dict[str, Any]]) -> str:
    """A markdown table of ``wheat_check`` reports."""
    lines = [
        f"| model | product | water rule | tiles | farmland ({', '.join(FARMLAND_CLASSES)}) | water (SeaLake, River) "
        "| classes |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for report in reports:
        classes = ", ".join(f"{name} {count}" for name, count in report["classes"].items())
        lines.append(
            f"| {report['model']} | {report['product']} | {'on' if report['water_rule'] else 'off'} "
            f"| {report['tiles']} | {100 * report['farmland']:.1f} % "
            f"| {100 * report['water']:.1f} % | {classes} |"
        )
    return "\n".join(lines) + "\n"


def with_mapping(card: ModelCard, mapping: dict[str, Any]) -> ModelCard:
    """``card`` carrying ``mapping`` as its L2A curves, and saying so in its radiometry."""
    radiometry = {**card.radiometry, "l2a": "Sentinel-2 L2A rasters go through product_mappings['l2a'] instead"}
    return dataclasses.replace(card, product_mappings={**card.product_mappings, "l2a": mapping}, radiometry=radiometry)


def write_fitted(model: str | Path, card: ModelCard, out: Path) -> Path:
    """``model``'s graph with ``card`` (its L2A mapping) at ``out``, and the card as markdown beside it.

    Both are written atomically; a full disk or a folder that cannot be written is one TrainingError.
    ``out`` was checked first (export.check_model_out): it is never ``model``.
    """
    from training.export import embed_card  # torch and onnx: only when a model is written

    markdown = out.with_suffix(".md")
    try:
        with atomic.atomic_path(out) as draft:
            shutil.copyfile(model, draft)
            embed_card(draft, card)
            written = load_model(draft).card
        atomic.write_text(markdown, written.to_markdown())
    except OSError as error:
        raise cannot_write(markdown if error.filename == str(markdown) else out, error) from None
    return out
