"""What the commands share: the options of a classification, and how an interrupted run ends.

``classify`` and ``classify-many`` (``cli/many.py``) take the same options; ``main`` and
``many`` both import them from here, so neither imports the other's module for them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.classify.evidence import RULE_SUMMARY
from ..core.errors import InputError
from ..core.options import PRODUCTS, SCALINGS, Area, one_area, parse_bands, parse_stride

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; raised like Ctrl-C so the same cleanup removes every temporary file."""


def add_classify_options(parser: argparse.ArgumentParser) -> None:
    """The options of a classification (model, area, bands, scaling, ...), besides input and outputs.

    ``classify_options`` turns them into engine options.
    """
    parser.add_argument("--model", help="ONNX model with a model card (default: the bundled model)")
    parser.add_argument(
        "--stride", type=int, help="step between tiles in model pixels (default or 0: tile size; smaller = overlap)"
    )
    parser.add_argument(
        "--bands",
        metavar="3,2,1",
        help="raster bands (from 1) for the model's channels, e.g. 3,2,1 (default: automatic)",
    )
    parser.add_argument(
        "--scale",
        choices=SCALINGS,
        default="auto",
        help="how values reach the model's range: auto = as is for 8-bit, the card's linear mapping for "
        "reflectance (0..10,000 or 0..1), one percentile range for all bands otherwise (see docs/ENGINE.md)",
    )
    parser.add_argument(
        "--offset",
        type=float,
        metavar="N",
        help="raw value removed before the card mapping, e.g. 1000 for Sentinel-2 baseline 04.00+ products "
        "(default: from BOA_ADD_OFFSET / RADIO_ADD_OFFSET in the metadata, else 0)",
    )
    parser.add_argument(
        "--product",
        type=str.lower,
        choices=PRODUCTS,
        default="auto",
        help="Sentinel-2 level of reflectance data: l1c (top of atmosphere, as the model learned) or l2a "
        "(surface reflectance, mapped with the model's L2A curves); auto: from the metadata, else the values",
    )
    parser.add_argument("--mask", metavar="polygons.gpkg", help="classify only tiles overlapping these polygons")
    parser.add_argument(
        "--layer", metavar="NAME", help="the --mask file's layer, when it holds several (or --mask FILE|layername=NAME)"
    )
    parser.add_argument(
        "--bbox", metavar="xmin,ymin,xmax,ymax[,EPSG:code]", help="classify only this box (default CRS: the raster's)"
    )
    parser.add_argument("--min-valid", type=float, default=0.5, help="valid-pixel fraction a tile needs (0.5)")
    parser.add_argument(
        "--no-water-rule",
        dest="water_rule",
        action="store_false",
        help="keep the network's water classes on tiles without water pixels (on by default: "
        + RULE_SUMMARY.replace("%", "%%")
        + ")",
    )
    parser.add_argument(
        "--nir-band", type=int, metavar="N", help="raster band (from 1) holding near infrared (default: by description)"
    )
    parser.add_argument(
        "--min-confidence",
        type=float,
        metavar="P",
        help="tiles below this top probability are marked doubtful (default: the model card's, else 0.5)",
    )
    parser.add_argument("--threads", type=int, help="onnxruntime threads (default: all cores)")
    parser.add_argument("--batch-size", type=int, default=32, help="tiles per inference batch (32)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def classify_options(
    args: argparse.Namespace, out_vector: str | None, out_raster: str | None, keep_class_map: bool = False
):
    """Engine options (ClassifyOptions) from the options ``add_classify_options`` defined."""
    from ..core.classify.pipeline import ClassifyOptions

    if args.layer and not args.mask:
        raise InputError("--layer chooses a layer of the --mask file, but there is no --mask; add it or drop --layer.")
    mask = read_mask(args.mask, args.layer) if args.mask else None
    bbox = parse_bbox(args.bbox) if args.bbox else None
    return ClassifyOptions(
        **model_settings(args),
        area=one_area(mask, bbox),
        out_vector=out_vector,
        out_raster=out_raster,
        keep_class_map=keep_class_map,
        water_rule=args.water_rule,
        nir_band=args.nir_band or None,
        min_confidence=args.min_confidence,
    )


def model_settings(args: argparse.Namespace) -> dict:
    """The options every command that runs the model shares (classify, classify-many, adapt), parsed."""
    return {
        "model_path": args.model,
        "stride": parse_stride(args.stride),
        "bands": parse_bands(args.bands),
        "scaling": args.scale,
        "offset": args.offset,
        "product": args.product,
        "min_valid_fraction": args.min_valid,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "overwrite": args.overwrite,
    }


def parse_bbox(text: str) -> Area:
    """'xmin,ymin,xmax,ymax[,EPSG:code]' -> Area (CRS None = the raster's)."""
    from ..core.crs import to_wkt

    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) not in (4, 5):
            raise ValueError
        bounds = tuple(float(v) for v in parts[:4])
    except ValueError:
        raise InputError(
            f"--bbox takes xmin,ymin,xmax,ymax[,EPSG:code], e.g. 13.18,53.88,13.23,53.90,EPSG:4326; got {text!r}."
        ) from None
    return Area(bounds=bounds, crs_wkt=to_wkt(parts[4]) if len(parts) == 5 else None)


def read_mask(path: str, layer_name: str | None = None) -> Area:
    """Polygons of one layer of a vector file (any OGR format) as an Area.

    ``path`` may be ``FILE|layername=NAME``; ``layer_name`` (``--layer``) names the layer too.
    A layer without a CRS is taken to be in the raster's CRS.
    """
    from ..core.sources.vector import read_features, split_layer

    if not Path(split_layer(path)[0]).exists():
        raise InputError(f"Mask file {split_layer(path)[0]} does not exist; check the path.")
    layer = read_features(path, layer=layer_name)
    if layer is None:
        raise InputError(f"{path} is not a vector file OGR can read (GeoPackage, Shapefile, GeoJSON, ...).")
    return Area(geometries=layer.geometries, crs_wkt=layer.crs_wkt)
