"""Headless command line: ``python -m rs_ghost_qgis classify|classify-many|adapt|info``.

Every RsGhostError ends the program with exit code 2 and one line ``error: ...`` on stderr
(no traceback); Ctrl-C ends it with 130, SIGTERM (``kill``, a job scheduler) with 143, both
leaving no partial output.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from ..core.errors import RsGhostError
from ..core.options import PRODUCTS, SCALINGS, check_outputs, face_message
from .common import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Terminated,
    add_classify_options,
    classify_options,
    model_settings,
)

EXIT_ERROR = 2
# GDAL's block cache defaults to 5 % of RAM; strips are read once, in order, so a small cache
# keeps the command's memory flat whatever the raster size (set GDAL_CACHEMAX to override).
GDAL_CACHE_MB = "64"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    os.environ.setdefault("GDAL_CACHEMAX", GDAL_CACHE_MB)
    args = _parser().parse_args(glue_bbox(sys.argv[1:] if argv is None else argv))
    try:
        with _sigterm_as_interrupt():
            return args.func(args)
    except RsGhostError as error:
        print(f"error: {face_message(error, 'cli')}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as interrupt:
        print("\ncancelled: no output was written.", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED


def glue_bbox(argv: list[str]) -> list[str]:
    """'--bbox -13.5,...' as '--bbox=-13.5,...': argparse takes a value starting with '-' for an option."""
    glued: list[str] = []
    for arg in argv:
        if glued and glued[-1] == "--bbox" and arg[:1] == "-" and arg[1:2] in tuple("0123456789."):
            glued[-1] = f"--bbox={arg}"
        else:
            glued.append(arg)
    return glued


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into a Terminated exception while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Python only lets the main thread install handlers; the default stays.
        return

    def terminate(signum: int, frame: object) -> None:
        # A second SIGTERM must not interrupt the cleanup the first one started.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rs_ghost_qgis",
        description="Classify rasters tile by tile with a G-GhostNet scene classifier (ONNX), without QGIS.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    classify = commands.add_parser(
        "classify",
        help="classify a raster into tiles of the model's footprint",
        description="Classify INPUT tile by tile at the model's ground sampling distance; write tile polygons "
        "(GeoPackage), a class + confidence raster (GeoTIFF) and print a per-class area table.",
    )
    classify.add_argument("input", help="raster file (GeoTIFF or anything GDAL reads), with a CRS")
    classify.add_argument("--out-vector", metavar="V.gpkg", help="tile polygons with class, confidence, probabilities")
    classify.add_argument("--out-raster", metavar="R.tif", help="class map: band 1 class, band 2 confidence %%")
    classify.add_argument("--preview", metavar="P.png", help="PNG of the class map over the image, with a legend")
    add_classify_options(classify)
    classify.set_defaults(func=_classify)

    from .many import add_parser as add_many  # Dask itself is imported only when classify-many runs

    add_many(commands, classify)

    _add_adapt(commands)

    info = commands.add_parser(
        "info", help="print a model's card", description="Print the model card of an ONNX model."
    )
    info.add_argument("--model", help="ONNX model (default: the bundled model)")
    info.add_argument("--threads", type=int, help="onnxruntime threads")
    info.set_defaults(func=_info)
    return parser


def _add_adapt(commands) -> None:
    """``adapt``: a new model for the user's classes from labelled polygons (core/adapt/adapt.py)."""
    adapt = commands.add_parser(
        "adapt",
        help="adapt a model to your own classes from labelled polygons (seconds, no torch)",
        description="Fit a new classifier on chips of RASTER inside labelled polygons, over the base model's "
        "features and the mean and std of every band of RASTER; write it as a new ONNX model with a card. "
        "A chip is one tile of the model's footprint; it belongs to the polygon containing its centre.",
    )
    adapt.add_argument("input", metavar="RASTER", help="raster file with a CRS (the scene the polygons are on)")
    adapt.add_argument("--polygons", required=True, metavar="FILE", help="labelled polygons (any OGR vector file)")
    adapt.add_argument(
        "--layer", metavar="NAME", help="the --polygons file's layer, when it holds several (or FILE|layername=NAME)"
    )
    adapt.add_argument("--class-field", required=True, metavar="FIELD", help="the polygons' field holding the class")
    adapt.add_argument("--out", required=True, metavar="MODEL.onnx", help="the adapted model to write")
    adapt.add_argument("--model", help="base ONNX model with a model card (default: the bundled model)")
    adapt.add_argument("--stride", type=int, help="step between chips in model pixels (default: a quarter of the tile)")
    adapt.add_argument("--bands", metavar="3,2,1", help="raster bands for the base model's channels (default: auto)")
    adapt.add_argument("--scale", choices=SCALINGS, default="auto", help="as for classify")
    adapt.add_argument("--offset", type=float, metavar="N", help="as for classify")
    adapt.add_argument("--product", type=str.lower, choices=PRODUCTS, default="auto", help="as for classify")
    adapt.add_argument("--min-valid", type=float, default=0.5, help="valid-pixel fraction a chip needs (0.5)")
    adapt.add_argument("--threads", type=int, help="onnxruntime threads (default: all cores)")
    adapt.add_argument("--batch-size", type=int, default=32, help="chips per inference batch (32)")
    adapt.add_argument("--overwrite", action="store_true", help="replace an existing output model")
    adapt.set_defaults(func=_adapt)


def _adapt(args: argparse.Namespace) -> int:
    from ..core.adapt.adapt import AdaptOptions, adapt, labels_from_file
    from ..core.sources.rasterio_source import RasterioSource

    options = AdaptOptions(out_path=args.out, **model_settings(args))
    labels = labels_from_file(args.polygons, args.class_field, args.layer)
    with RasterioSource(args.input) as source:
        result = adapt(source, labels, options)
    for warning in [*result.warnings, result.unmeasured_note()]:
        if warning:
            _warn(warning)
    print(result.summary())
    print()
    print(f"{'model:':9}{Path(result.out_path).resolve()}")
    print(f"{'features:':9}{result.card.training['method']}")
    print(f"{'scaling:':9}{result.card.training['scaling']}")
    print(f"{'time:':9}{result.seconds:.1f} s")
    return 0


def _info(args: argparse.Namespace) -> int:
    from ..core.model.runtime import load_model

    model = load_model(args.model, args.threads)
    print(f"model: {model.path}\nruns on: {model.provider}\n")
    print(model.card.to_markdown())
    return 0


def _classify(args: argparse.Namespace) -> int:
    from ..core.classify.sinks import check_output
    from ..core.sources.rasterio_source import RasterioSource

    check_outputs(args.out_vector, args.out_raster, args.preview)
    _check_not_inputs(args)
    if args.preview:
        check_output(args.preview, args.overwrite, (".png",), "preview", input_path=args.input)
    options = classify_options(args, args.out_vector, args.out_raster, keep_class_map=bool(args.preview))
    with RasterioSource(args.input) as source:
        preview = None
        if args.preview:
            from .preview import render_preview

            def preview(result):
                # Drawn from the finished run before anything is published, so the preview is
                # published with the other outputs or none of them is.
                return [render_preview(source, result, args.preview, options)]

        result = _run_with_progress(source, options, preview)
    print(result.summary_table())
    print()
    for label, value in (
        ("vector", args.out_vector),
        ("raster", args.out_raster),
        ("preview", args.preview),
    ):
        if value:
            print(f"{label + ':':9}{Path(value).resolve()}")
    print(f"{'bands:':9}{face_message(result.bands_note, 'cli')}")
    print(f"{'scaling:':9}{result.scaling_used}")
    rate = result.tiles_classified / result.seconds if result.seconds else 0.0
    print(
        f"{'model:':9}{result.card.architecture} on {result.provider}; {result.tiles_total:,} tiles in "
        f"{result.seconds:.1f} s ({rate:,.0f} tiles/s)"
    )
    return 0


def _check_not_inputs(args: argparse.Namespace) -> None:
    """No output of classify may be its mask or model (core/outputs.py; the raster is checked with the rest)."""
    from ..core.outputs import check_not_input

    inputs = {"the mask (--mask)": args.mask, "the model (--model)": args.model}
    outputs = {"--out-vector": args.out_vector, "--out-raster": args.out_raster, "--preview": args.preview}
    for flag, path in outputs.items():
        if path:
            check_not_input(path, f"the output ({flag})", inputs)


def _run_with_progress(source, options, extra_outputs=None):
    from tqdm import tqdm

    from ..core.classify.pipeline import classify

    bars = []  # the bar appears with the first progress report, after every check has passed

    def progress(percent: float) -> None:
        if not bars:
            bars.append(
                tqdm(total=100, desc="classifying", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}]")
            )
        bars[0].update(percent - bars[0].n)

    try:
        return classify(source, options, progress=progress, warn=_warn, extra_outputs=extra_outputs)
    finally:
        for bar in bars:
            bar.close()


def _warn(text: str) -> None:
    """A radiometry warning on stderr, before the progress bar starts."""
    print(f"warning: {face_message(text, 'cli')}", file=sys.stderr)
