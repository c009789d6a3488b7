"""The dialog's "Adapt to my polygons..." on the Demmin scene, in a QGIS window -> docs/screenshot_adapt.png.

Run under xvfb-run: ``xvfb-run -a -s "-screen 0 1800x1100x24" .venv/bin/python scripts/screenshot_adapt.py``.
The scene is shown as true colour with the labelled polygons of bench/demmin_labels.py, styled
by category (the adapted classes take these colours). Through the plugin's own dialogs, as a
user would: "Adapt to my polygons..." adapts the bundled model, then Run classifies the scene
with the adapted model at stride 16; the window, both dialogs docked on the right, is grabbed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZE = (1800, 1100)
COLOURS = {"wheat": "#2e8b57", "bare": "#c8a165", "other crop": "#e0d040"}


def _screenshot_module():
    spec = importlib.util.spec_from_file_location("screenshot", REPO / "scripts" / "screenshot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def polygon_layer(path: Path):
    """The labelled polygons, categorized by class with COLOURS, outlined so the imagery shows through."""
    from qgis.core import (
        QgsCategorizedSymbolRenderer,
        QgsRendererCategory,
        QgsSymbol,
        QgsVectorLayer,
        QgsWkbTypes,
    )
    from qgis.PyQt.QtGui import QColor

    from bench.demmin_labels import CLASS_FIELD, write_demmin_labels

    layer = QgsVectorLayer(str(write_demmin_labels(path)), "my polygons", "ogr")
    categories = []
    for name, colour in COLOURS.items():
        symbol = QgsSymbol.defaultSymbol(QgsWkbTypes.PolygonGeometry)
        symbol.setColor(QColor(colour))
        symbol.symbolLayer(0).setStrokeColor(QColor("#000000"))
        symbol.symbolLayer(0).setStrokeWidth(0.6)
        categories.append(QgsRendererCategory(name, symbol, name))
    layer.setRenderer(QgsCategorizedSymbolRenderer(CLASS_FIELD, categories))
    return layer


def main(argv: list[str] | None = None) -> int:
    """Adapt and classify through the dialogs, arrange, grab."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot_adapt.png")
    args = parser.parse_args(argv)
    shot = _screenshot_module()
    shot.SIZE = SIZE
    from qgis.core import (
        QgsApplication,
        QgsCoordinateReferenceSystem,
        QgsCoordinateTransform,
        QgsProject,
        QgsRasterLayer,
    )
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QDockWidget, QLabel, QScrollArea

    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    app = QgsApplication([], True)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    import rs_ghost_qgis

    work = Path(tempfile.mkdtemp(prefix="rs_ghost_adapt_shot_"))
    window, canvas, bar, view, _bridge = shot.build_window(app)
    project = QgsProject.instance()
    scene = shot.locate_scene()
    layer = QgsRasterLayer(str(scene), "Sentinel-2 Demmin 2023-06-03")
    shot.true_colour(layer)
    project.addMapLayer(layer)
    project.setCrs(QgsCoordinateReferenceSystem(shot.MAP_CRS))
    canvas.setDestinationCrs(project.crs())
    polygons = polygon_layer(work / "my_polygons.gpkg")
    project.addMapLayer(polygons)

    iface = shot.Iface(window, canvas, bar)
    iface.active = layer
    plugin = rs_ghost_qgis.classFactory(iface)
    plugin.initGui()
    plugin.show_dialog()
    dialog = plugin.dialog
    dialog.bundled_radio.setChecked(True)
    dialog.area_combo.setCurrentIndex(dialog.area_combo.findData("whole"))
    dialog.stride_spin.setValue(16)
    dialog.polygons_check.setChecked(True)
    dialog.raster_check.setChecked(False)
    dialog.folder_widget.setFilePath(str(work))
    dialog.open_adapt()
    adapt = dialog.adapt_dialog
    adapt.layer_combo.setLayer(polygons)
    adapt.field_combo.setField("landcover")
    adapt.out_file.setFilePath(str(work / "demmin_adapted.onnx"))
    adapt.run()  # a QgsTask, like classify: wait for it
    if adapt.task is not None:
        from qgis.PyQt.QtCore import QEventLoop, QTimer

        loop = QEventLoop()
        adapt.task.done.connect(lambda _: QTimer.singleShot(0, loop.quit))  # after the dialog has shown the end
        QTimer.singleShot(300_000, loop.quit)
        loop.exec_()
    if adapt.result is None:
        print(f"screenshot: {adapt.message.text()}", file=sys.stderr)
        return 2
    for widget, title in ((dialog, "RS Ghost"), (adapt, "RS Ghost: adapt to my polygons")):
        dock = QDockWidget(title)
        dock.setWidget(widget)
        window.addDockWidget(Qt.RightDockWidgetArea, dock)
    window.show()
    if not shot.run_dialog(dialog):
        return 2
    window.findChild(QLabel, "mapTitle").setText(
        "The bundled model adapted to 7 polygons (3 classes of my own) in seconds, classified at stride 16"
    )
    dialog.findChild(QScrollArea).ensureWidgetVisible(dialog.model_info)  # the new card: classes, accuracy
    root = project.layerTreeRoot()
    node = root.findLayer(polygons.id())
    node.parent().insertChildNode(0, node.clone())  # the polygons on top of the tiles
    node.parent().removeChildNode(node)
    transform = QgsCoordinateTransform(layer.crs(), project.crs(), project)
    canvas.setExtent(transform.transformBoundingBox(layer.extent()).buffered(100))
    shot.grab(window, canvas, root, args.out)
    sys.stdout.flush()
    # Qt's teardown of the docked dialogs crashes under Xvfb; the picture is saved: leave at once.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
