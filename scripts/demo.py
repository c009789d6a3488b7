"""`make demo`: classify the Demmin Sentinel-2 scene with the bundled model and draw a preview.

The scene is read from ../shared/data when that folder is there; otherwise it is downloaded
once from its pinned public source into cache/ and verified by sha256. Outputs go to
out/demo/ (both folders are git-ignored).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rs_ghost_qgis.cli.main import main as cli_main  # noqa: E402
from rs_ghost_qgis.core.download import fetch  # noqa: E402
from rs_ghost_qgis.core.errors import ModelError, RsGhostError  # noqa: E402
from rs_ghost_qgis.core.model.runtime import default_model_path  # noqa: E402

SCENE = "sentinel2_demmin_germany_20230603.tif"
SCENE_URL = (
    "https://raw.githubusercontent.com/KonstiDE/Demmin_Fieldwork/"
    "d547b64611c202182a2dafe36f0407f372cd3cc7/data/sentinel2_fields.tif"
)
SCENE_SHA256 = "90dea8d11ffd8d72ee358eafad66887486925b585eaabcbf53f6241bc14e0177"
SHARED_SCENE = REPO.parent / "shared" / "data" / "geotiff" / SCENE
CACHED_SCENE = REPO / "cache" / SCENE


def locate_scene(shared: Path = SHARED_SCENE, cached: Path = CACHED_SCENE, url: str = SCENE_URL) -> Path:
    """The Demmin scene: the shared copy when present, else a verified download in the cache."""
    if shared.is_file():
        return shared
    print(f"demo: {shared} is not here; fetching the scene from its public source into {cached.parent}/")
    return fetch(url, cached, SCENE_SHA256)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="ONNX model (default: the bundled model)")
    parser.add_argument("--input", type=Path, help="raster to classify instead of the Demmin scene")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "demo", help="output folder (out/demo)")
    args = parser.parse_args(argv)
    try:
        if args.model is None:
            default_model_path()
        scene = args.input or locate_scene()
    except ModelError as error:
        print(
            f"demo: {error}\ndemo: the demo runs the bundled model; get it with `make train`, or run "
            f"`.venv/bin/python scripts/demo.py --model PATH.onnx` with any exported model.",
            file=sys.stderr,
        )
        return 2
    except RsGhostError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2
    out = args.out
    stem = Path(scene).stem
    outputs = {
        "vector": out / f"{stem}_tiles.gpkg",
        "raster": out / f"{stem}_classes.tif",
        "preview": out / f"{stem}_preview.png",
    }
    command = ["classify", str(scene), "--overwrite"]
    command += ["--out-vector", str(outputs["vector"]), "--out-raster", str(outputs["raster"])]
    command += ["--preview", str(outputs["preview"])]
    if args.model:
        command += ["--model", args.model]
    code = cli_main(command)
    if code == 0:
        print(f"\ndemo: classified {scene}")
        for label, path in outputs.items():
            print(f"demo: {label:8} {path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
