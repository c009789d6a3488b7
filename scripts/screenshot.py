"""`make screenshot`: the plugin classifying the Demmin scene in a QGIS window -> docs/screenshot.png.

Runs under xvfb-run (see the Makefile). A QgsApplication with GUI shows a map canvas, the
layer tree with its legend and the plugin's own dialog; the Demmin Sentinel-2 scene is shown
as true colour (B4/B3/B2 stretched 0-3000) and classified with the bundled model through the
plugin's dialog and task, exactly as a user would, then the window is grabbed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZE = (1600, 1000)
LEGEND_WIDTH = 380
DIALOG_WIDTH = 540
STRETCH = (0.0, 3000.0)  # display only: L2A reflectance x 10,000 as bright true colour (the model uses its card)
MAP_CRS = "EPSG:32633"  # UTM 33N: true shapes at Demmin (the scene itself is in degrees)
CREDIT = "Contains modified Copernicus Sentinel data 2023 · Sentinel-2 L2A, 2023-06-03, near Demmin, Germany"


def locate_scene() -> Path:
    """The Demmin scene, found (or fetched and verified) the way `make demo` does."""
    spec = importlib.util.spec_from_file_location("demo", REPO / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return Path(demo.locate_scene())


class Iface:
    """The part of QgisInterface the plugin uses, over a plain main window."""

    def __init__(self, window, canvas, bar) -> None:
        self.window, self.canvas, self.bar = window, canvas, bar
        self.active = None
        self.raster_menu = window.menuBar().addMenu("&Raster").addMenu("RS Ghost")

    def mainWindow(self):  # noqa: N802 (QGIS API)
        """The main window."""
        return self.window

    def mapCanvas(self):  # noqa: N802 (QGIS API)
        """The map canvas."""
        return self.canvas

    def messageBar(self):  # noqa: N802 (QGIS API)
        """The message bar above the map."""
        return self.bar

    def activeLayer(self):  # noqa: N802 (QGIS API)
        """The layer selected in the layer tree."""
        return self.active

    def addToolBar(self, name):  # noqa: N802 (QGIS API)
        """A toolbar in the main window."""
        return self.window.addToolBar(name)

    def addPluginToRasterMenu(self, menu, action):  # noqa: N802 (QGIS API)
        """The Raster menu entry."""
        self.raster_menu.addAction(action)

    def removePluginRasterMenu(self, menu, action):  # noqa: N802 (QGIS API)
        """Remove the Raster menu entry."""
        self.raster_menu.removeAction(action)


def true_colour(layer) -> None:
    """B4/B3/B2 as red/green/blue, each stretched over STRETCH."""
    from qgis.core import QgsContrastEnhancement, QgsMultiBandColorRenderer

    renderer = QgsMultiBandColorRenderer(layer.dataProvider(), 1, 2, 3)
    for band, setter in ((1, renderer.setRedContrastEnhancement), (2, renderer.setGreenContrastEnhancement)):
        setter(_stretch(layer, band, QgsContrastEnhancement))
    renderer.setBlueContrastEnhancement(_stretch(layer, 3, QgsContrastEnhancement))
    layer.setRenderer(renderer)


def _stretch(layer, band, enhancement_class):
    enhancement = enhancement_class(layer.dataProvider().dataType(band))
    enhancement.setContrastEnhancementAlgorithm(enhancement_class.StretchToMinimumMaximum)
    enhancement.setMinimumValue(STRETCH[0])
    enhancement.setMaximumValue(STRETCH[1])
    return enhancement


def build_window(app):
    """Main window: legend on the left, map in the middle, the plugin's dialog on the right."""
    from qgis.core import QgsLayerTreeModel, QgsProject
    from qgis.gui import QgsLayerTreeMapCanvasBridge, QgsLayerTreeView, QgsMapCanvas, QgsMessageBar
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QDockWidget, QLabel, QMainWindow, QVBoxLayout, QWidget

    window = QMainWindow()
    window.resize(*SIZE)
    canvas = QgsMapCanvas()
    canvas.setCanvasColor(Qt.white)
    bar = QgsMessageBar()
    centre = QWidget()
    layout = QVBoxLayout(centre)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(bar)
    title = QLabel()
    title.setObjectName("mapTitle")
    title.setStyleSheet("font-size:14pt; font-weight:bold; padding:4px 6px;")
    title.setWordWrap(True)
    layout.addWidget(title)
    layout.addWidget(canvas, 1)
    credit = QLabel(CREDIT)
    credit.setStyleSheet("color:#555; padding:2px 6px;")
    credit.setWordWrap(True)
    layout.addWidget(credit)
    window.setCentralWidget(centre)
    root = QgsProject.instance().layerTreeRoot()
    view = QgsLayerTreeView()
    model = QgsLayerTreeModel(root, view)  # parented: the view does not own its model
    model.setFlag(QgsLayerTreeModel.AllowNodeChangeVisibility)
    model.setFlag(QgsLayerTreeModel.ShowLegendAsTree)
    view.setModel(model)
    view.setMinimumWidth(LEGEND_WIDTH)
    dock = QDockWidget("Layers")
    dock.setObjectName("legend")
    dock.setWidget(view)
    window.addDockWidget(Qt.LeftDockWidgetArea, dock)
    bridge = QgsLayerTreeMapCanvasBridge(root, canvas)
    bridge.setAutoSetupOnFirstLayer(False)  # the map CRS is chosen below, not taken from the scene
    return window, canvas, bar, view, bridge


def _spin(milliseconds: int) -> None:
    """Run the event loop for a while (renders and repaints happen there)."""
    from qgis.PyQt.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(milliseconds, loop.quit)
    loop.exec_()


def run_dialog(dialog) -> bool:
    """Press Run in the dialog and wait for its task; False (with the message) when it fails."""
    from qgis.PyQt.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    dialog.start()
    if dialog.task is None:
        print(f"screenshot: {dialog.message.text()}", file=sys.stderr)
        return False
    dialog.task.done.connect(lambda _: loop.quit())
    QTimer.singleShot(300_000, loop.quit)
    loop.exec_()
    if dialog.task is not None or not dialog.message.text().startswith("Done"):
        print(f"screenshot: {dialog.message.text()}", file=sys.stderr)
        return False
    return True


def grab(window, canvas, root, out: Path) -> None:
    """Render the visible layers and save the window as ``out``."""
    canvas.setLayers([node.layer() for node in root.findLayers() if node.isVisible()])
    canvas.refreshAllLayers()
    _spin(2000)  # let the canvas start and finish its render jobs
    canvas.waitWhileRendering()
    _spin(500)
    out.parent.mkdir(parents=True, exist_ok=True)
    window.resize(*SIZE)
    _spin(300)
    window.grab().save(str(out))
    print(f"screenshot: {out}")


def main(argv: list[str] | None = None) -> int:
    """Classify, arrange, grab; exit 2 with a message when the model or scene is missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="ONNX model (default: the bundled model)")
    parser.add_argument("--scene", type=Path, help="raster to show (default: the Demmin scene)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png")
    parser.add_argument("--rerun-stride", type=int, help="then run again at this stride (px) and grab that too")
    parser.add_argument("--rerun-out", type=Path, default=REPO / "docs" / "screenshot_rerun.png")
    args = parser.parse_args(argv)

    from qgis.core import (
        QgsApplication,
        QgsCoordinateReferenceSystem,
        QgsCoordinateTransform,
        QgsProject,
        QgsRasterLayer,
    )
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QDockWidget, QLabel

    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    app = QgsApplication([], True)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    import rs_ghost_qgis
    from rs_ghost_qgis.core.errors import RsGhostError

    try:
        from rs_ghost_qgis.core.model.runtime import default_model_path

        model = Path(args.model) if args.model else default_model_path()
        scene = args.scene or locate_scene()
    except RsGhostError as error:
        print(f"screenshot: {error}", file=sys.stderr)
        return 2

    window, canvas, bar, view, bridge = build_window(app)
    project = QgsProject.instance()
    layer = QgsRasterLayer(str(scene), "Sentinel-2 Demmin 2023-06-03")
    if not layer.isValid():
        print(f"screenshot: cannot open {scene}", file=sys.stderr)
        return 2
    true_colour(layer)
    project.addMapLayer(layer)
    project.setCrs(QgsCoordinateReferenceSystem(MAP_CRS))  # after the first layer, which sets its own
    canvas.setDestinationCrs(project.crs())

    iface = Iface(window, canvas, bar)
    iface.active = layer
    plugin = rs_ghost_qgis.classFactory(iface)
    plugin.initGui()
    plugin.show_dialog()
    dialog = plugin.dialog
    if dialog is None:  # the dependency check stopped it
        print("screenshot: the plugin could not open its dialog (dependencies?)", file=sys.stderr)
        return 2
    dialog.file_radio.setChecked(True)
    dialog.model_file.setFilePath(str(model))
    dialog.area_combo.setCurrentIndex(dialog.area_combo.findData("whole"))
    dialog.stride_spin.setValue(0)
    dialog.polygons_check.setChecked(True)
    dialog.raster_check.setChecked(True)
    dialog.folder_widget.setFilePath("")  # temporary outputs
    dock = QDockWidget("RS Ghost")
    dock.setWidget(dialog)
    window.addDockWidget(Qt.RightDockWidgetArea, dock)
    window.show()
    legend = window.findChild(QDockWidget, "legend")
    window.resizeDocks([legend, dock], [LEGEND_WIDTH, DIALOG_WIDTH], Qt.Horizontal)

    if not run_dialog(dialog):
        return 2
    # The plugin's own defaults decide what is shown: tiles over the imagery, class raster off.
    root = project.layerTreeRoot()
    card = dialog.card
    window.findChild(QLabel, "mapTitle").setText(
        f"Land cover per {card.tile_size_m:g} m tile ({card.architecture}, {card.num_classes} EuroSAT-style classes)"
        f" over Sentinel-2 true colour"
    )
    transform = QgsCoordinateTransform(layer.crs(), project.crs(), project)
    canvas.setExtent(transform.transformBoundingBox(layer.extent()).buffered(150))
    grab(window, canvas, root, args.out)
    if args.rerun_stride:
        # A rerun as a user makes it: same dialog, another stride; the plugin's own layer order,
        # names and visibility (the newest run on top) are what the picture shows.
        dialog.stride_spin.setValue(args.rerun_stride)
        if not run_dialog(dialog):
            return 2
        view.expandAllNodes()
        grab(window, canvas, root, args.rerun_out)
    plugin.unload()
    project.removeAllMapLayers()
    window.close()
    window.deleteLater()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
