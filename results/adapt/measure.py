"""Adapt the bundled model on the Demmin scene and score the second wheat field (results/adapt/README.md).

Run from the repository root: ``.venv/bin/python results/adapt/measure.py``. Writes the polygons,
the adapted model, the tiles and a preview into results/adapt/ (the model and tiles are not committed).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import shapely
from osgeo import ogr

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.demmin_labels import CLASS_FIELD, SECOND_WHEAT_BOX, write_demmin_labels  # noqa: E402
from rs_ghost_qgis.core.crs import to_wkt, transform_geometry  # noqa: E402

SCENE = REPO.parent / "shared" / "data" / "geotiff" / "sentinel2_demmin_germany_20230603.tif"
HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "rs_ghost_qgis"]


def run(command: list[str]) -> float:
    """Run ``command`` in the repository root, echo it, return its wall time."""
    print("$ " + " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True)
    return time.perf_counter() - started


def wheat_share(tiles: Path) -> tuple[int, int, dict[str, int]]:
    """(wheat tiles, tiles, counts per class) of the tiles lying wholly in SECOND_WHEAT_BOX."""
    box = shapely.box(*SECOND_WHEAT_BOX)
    dataset = ogr.Open(str(tiles))  # kept: the layer dies with its dataset
    layer = dataset.GetLayer(0)
    wkt = layer.GetSpatialRef().ExportToWkt()
    counts: dict[str, int] = {}
    for feature in layer:
        geometry = shapely.from_wkb(bytes(feature.GetGeometryRef().ExportToIsoWkb()))
        if feature.GetField("class_name") and box.contains(transform_geometry(geometry, wkt, to_wkt("EPSG:32633"))):
            counts[feature.GetField("class_name")] = counts.get(feature.GetField("class_name"), 0) + 1
    return counts.get("wheat", 0), sum(counts.values()), counts


def main() -> int:
    """Polygons, adaptation, classification at stride 16, the score."""
    polygons = HERE / "demmin_polygons.gpkg"  # committed; written from bench/demmin_labels.py when missing
    if not polygons.exists():
        write_demmin_labels(polygons)
    model, tiles = HERE / "demmin_adapted.onnx", HERE / "demmin_tiles.gpkg"
    seconds = run(
        [
            *CLI,
            "adapt",
            str(SCENE),
            "--polygons",
            str(polygons),
            "--class-field",
            CLASS_FIELD,
            "--out",
            str(model),
            "--overwrite",
        ]
    )
    run(
        [
            *CLI,
            "classify",
            str(SCENE),
            "--model",
            str(model),
            "--stride",
            "16",
            "--out-vector",
            str(tiles),
            "--preview",
            str(HERE / "demmin_adapted_preview.png"),
            "--overwrite",
        ]
    )
    wheat, total, counts = wheat_share(tiles)
    base_tiles = HERE / "demmin_tiles_bundled.gpkg"
    run([*CLI, "classify", str(SCENE), "--stride", "16", "--out-vector", str(base_tiles), "--overwrite"])
    print(f"before (bundled model), same tiles: {wheat_share(base_tiles)[2]}")
    print(f"adapt command: {seconds:.1f} s wall (process start included)")
    print(
        f"second wheat field, tiles wholly inside {SECOND_WHEAT_BOX} (EPSG:32633), stride 16: "
        f"{wheat} of {total} wheat ({100 * wheat / max(total, 1):.1f} %); {counts}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
