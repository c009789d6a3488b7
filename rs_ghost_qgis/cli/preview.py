"""A picture to check a run at a glance: the image, and the class map laid over it with a legend.

Drawn from what the run carries forward: its class map (``ClassifyOptions.keep_class_map``)
and its radiometry, so neither the class raster nor the statistics are read a second time.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.atomic import temporary_path
from ..core.classify.pipeline import ClassifyOptions
from ..core.classify.results import ClassifyResult
from ..core.classify.sinks import NODATA_CLASS, write_failed
from ..core.crs import describe

MAX_IMAGE_PX = 1400  # long side of the image rendering
MAX_OUTLINED_CELLS = 120  # draw tile outlines only when there are few enough to see
OVERLAY_ALPHA = 0.45


def render_preview(
    source, result: ClassifyResult, path: str | os.PathLike, options: ClassifyOptions
) -> tuple[Path, Path]:
    """Draw the preview of ``path`` under a temporary name; return (temporary, final path) for publish_all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # check_output makes no folder
    tmp = temporary_path(path)
    try:
        _draw(source, result, tmp, options)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise write_failed("preview", path, error.strerror or error) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, path


def _draw(source, result: ClassifyResult, tmp: Path, options: ClassifyOptions) -> None:
    """Render the figure into ``tmp``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    card = result.card
    class_map = result.class_map
    bounds, grid_wkt = class_map.bounds, class_map.crs_wkt
    cells = (class_map.classes.shape[1], class_map.classes.shape[0])
    image, valid = _render_image(source, result, bounds, grid_wkt)
    # The class map on the image's pixels, so it can be hidden where the image has no data.
    classes = _nearest(class_map.classes, valid.shape)
    extent = (bounds[0], bounds[2], bounds[1], bounds[3])

    colours = ListedColormap([tuple(value / 255 for value in rgb) for rgb in card.class_rgb])
    overlay = np.ma.masked_where((classes == NODATA_CLASS) | ~valid, classes)

    aspect = (bounds[3] - bounds[1]) / (bounds[2] - bounds[0])
    panel_w = 6.0
    fig, axes = plt.subplots(1, 2, figsize=(2 * panel_w + 3.2, max(3.5, panel_w * aspect + 1.6)), dpi=110)
    for ax, title in zip(axes, ("image (bands and scaling as fed to the model)", "classes")):
        ax.imshow(image, extent=extent, interpolation="bilinear")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"x (m), {describe(grid_wkt)}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(useOffset=False, style="plain")
    axes[0].set_ylabel("y (m)", fontsize=8)
    axes[1].imshow(
        overlay,
        extent=extent,
        cmap=colours,
        vmin=-0.5,
        vmax=card.num_classes - 0.5,
        alpha=OVERLAY_ALPHA,
        interpolation="nearest",
    )
    if max(cells) <= MAX_OUTLINED_CELLS:
        xs = np.linspace(bounds[0], bounds[2], cells[0] + 1)
        ys = np.linspace(bounds[1], bounds[3], cells[1] + 1)
        axes[1].vlines(xs, bounds[1], bounds[3], colors="white", linewidths=0.4, alpha=0.5)
        axes[1].hlines(ys, bounds[0], bounds[2], colors="white", linewidths=0.4, alpha=0.5)
    for ax in axes:
        ax.set_xlim(bounds[0], bounds[2])
        ax.set_ylim(bounds[1], bounds[3])

    handles = [
        Patch(
            facecolor=row.color,
            edgecolor="0.3",
            label=f"{row.class_name}  {row.percent:.1f} %  ({row.hectares:,.0f} ha)",
        )
        for row in result.areas
        if row.tiles or row.hectares
    ]
    if result.tiles_nodata:
        label = (
            f"not classified (< {options.min_valid_fraction:.0%} data): {result.tiles_nodata:,} of "
            f"{result.tiles_total:,} tiles"
        )
        handles.append(Patch(facecolor="none", edgecolor="0.3", label=label))
    axes[1].legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title="class, area", title_fontsize=8
    )
    fig.suptitle(
        f"{source.info.name}  —  {card.architecture} ({Path(str(options.model_path or 'bundled model')).name})\n"
        f"{card.tile_size_m:g} m tiles, {result.tiles_classified:,} classified; {result.scaling_used}",
        fontsize=10,
    )
    fig.tight_layout()
    try:
        fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


def _render_image(source, result: ClassifyResult, bounds, grid_wkt: str):
    """The raster over ``bounds`` as RGB in 0..1 (the run's bands and scaling) and its valid mask."""
    radiometry = result.radiometry
    width_m, height_m = bounds[2] - bounds[0], bounds[3] - bounds[1]
    scale = MAX_IMAGE_PX / max(width_m, height_m)
    width, height = max(1, round(width_m * scale)), max(1, round(height_m * scale))
    block = source.read(bounds, grid_wkt, width, height, radiometry.bands)
    values = radiometry.to_values(block.data)
    values = values[:3] if len(values) >= 3 else np.repeat(values[:1], 3, axis=0)  # grey for 1-2 bands
    low, high = result.card.value_range
    rgb = np.clip((values - low) / (high - low), 0.0, 1.0).transpose(1, 2, 0)
    rgb[~block.valid] = 0.85  # light grey where there is no data
    return rgb, block.valid


def _nearest(cells: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``cells`` resampled to ``shape`` by nearest neighbour (each pixel takes the cell under its centre)."""
    rows = ((np.arange(shape[0]) + 0.5) * cells.shape[0] / shape[0]).astype(int)
    cols = ((np.arange(shape[1]) + 0.5) * cells.shape[1] / shape[1]).astype(int)
    return cells[np.minimum(rows, cells.shape[0] - 1)][:, np.minimum(cols, cells.shape[1] - 1)]
