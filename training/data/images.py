"""Decode image files to uint8 RGB arrays of one size.

Pillow decodes everything it can; TIFFs it cannot read (16-bit or multi-band) go through
rasterio. Whatever the file holds becomes (size, size, 3) uint8 RGB: grayscale is replicated
to three bands, alpha is dropped, the first three bands of a multi-band TIFF are kept, and
16-bit or float values are stretched per band between their 2nd and 98th percentiles.
Images of another size are resized (bilinear, antialiased when shrinking), not cropped.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
HIGH_BIT_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


def stretch_to_uint8(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map (..., bands) values linearly from [low, high] per band to 0..255, clipping outside."""
    span = np.maximum(high - low, np.finfo(np.float32).eps)
    scaled = (values.astype(np.float32) - low) / span * 255.0
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def percentile_stretch(values: np.ndarray) -> np.ndarray:
    """Stretch (H, W, bands) values to uint8 between each band's 2nd and 98th percentile."""
    low, high = np.percentile(values.reshape(-1, values.shape[-1]), [2, 98], axis=0)
    return stretch_to_uint8(values, low, high)


def decode_image(path: Path, size: int) -> tuple[np.ndarray, str]:
    """Return ``path`` as a (size, size, 3) uint8 RGB array and the conversion it needed.

    The conversion is "" for plain 8-bit RGB, else "grayscale", "alpha_dropped",
    "16bit_stretched" or "other_mode" (palette, CMYK, ...). Raises whatever Pillow or
    rasterio raise for an unreadable file.
    """
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                # Decoding a JPEG at a reduced DCT scale is far faster than full size + resize.
                image.draft("RGB", (size, size))
            rgb, conversion = _pillow_to_rgb(image)
    except UnidentifiedImageError:
        if path.suffix.lower() not in {".tif", ".tiff"}:
            raise
        rgb, conversion = _read_tiff_with_rasterio(path)
    if rgb.shape[:2] != (size, size):
        rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR))
    return rgb, conversion


def _pillow_to_rgb(image: Image.Image) -> tuple[np.ndarray, str]:
    mode = image.mode
    if mode in HIGH_BIT_DEPTH_MODES:
        values = np.asarray(image, dtype=np.float32)[..., None]
        return np.repeat(percentile_stretch(values), 3, axis=-1), "16bit_stretched"
    if mode == "RGB":
        return np.asarray(image), ""
    if mode in ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        return np.asarray(image.convert("RGBA"))[..., :3], "alpha_dropped"
    conversion = "grayscale" if mode in {"L", "1"} else "other_mode"
    return np.asarray(image.convert("RGB")), conversion


def _read_tiff_with_rasterio(path: Path) -> tuple[np.ndarray, str]:
    # Imported here: JPEG and PNG patches (EuroSAT) train where rasterio is not installed (a GPU image).
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        # Plain (non-geo) TIFFs are expected here; their missing georeferencing is irrelevant.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as dataset:
            bands = [1, 2, 3] if dataset.count >= 3 else [1]
            values = np.moveaxis(dataset.read(bands), 0, -1)
    if values.dtype == np.uint8:
        rgb, conversion = values, ""
    else:
        rgb, conversion = percentile_stretch(values), "16bit_stretched"
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
        conversion = conversion or "grayscale"
    return np.ascontiguousarray(rgb), conversion


def decode_many(paths: list[Path], size: int) -> tuple[np.ndarray, list[str], dict[int, str]]:
    """Decode ``paths`` on a thread pool (Pillow releases the GIL while decoding).

    Returns the (N, size, size, 3) uint8 images (zeros where decoding failed), the conversion
    of each file, and {index: reason} for the files that could not be decoded.
    """
    images = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    conversions = [""] * len(paths)
    failures: dict[int, str] = {}

    def decode_one(index: int) -> None:
        try:
            images[index], conversions[index] = decode_image(paths[index], size)
        # Broken files make Pillow and GDAL raise many different types; any of them means
        # "this file is unreadable", which the caller counts and reports.
        except Exception as error:  # noqa: BLE001
            failures[index] = f"{type(error).__name__}: {error}"

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        list(pool.map(decode_one, range(len(paths))))
    return images, conversions, failures
