"""The plugin as QGIS sees it: a toolbar, Raster menu entries and the Processing provider."""

from __future__ import annotations

import re

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from . import LOG_TAG, deps
from .paths import icon_path

MENU = "&RS Ghost"
TOOLBAR_NAME = "RsGhostToolbar"
# deps.check() words its problem as a full sentence that already begins like the tooltip.
_CANNOT_RUN = re.compile(r"^\s*RS Ghost cannot run[^:]*:\s*")


def dependency_folder():
    """The plugin-owned folder for onnxruntime, inside the QGIS profile."""
    return deps.deps_folder(QgsApplication.qgisSettingsDirPath())


def missing_tooltip(problem: str) -> str:
    """The toolbar tooltip when a dependency is missing: say "cannot run yet" once, then the problem."""
    return f"RS Ghost cannot run yet: {_CANNOT_RUN.sub('', problem).strip()} Click for the fix."


class RsGhostPlugin:
    """Wires the dialog, the dependency check and the Processing provider into QGIS."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider = None
        self.toolbar = None
        self.actions: list[QAction] = []
        self.dialog = None
        # Plugin-installed packages must win over older ones in QGIS's Python, and wheels that
        # bundle GEOS/GDAL must be imported before anything binds them to QGIS's copies.
        deps.activate(dependency_folder())
        deps.load_isolated()

    def initProcessing(self) -> None:  # noqa: N802 (QGIS API)
        """Register the Processing provider (also called by headless qgis_process)."""
        if self.provider is None:
            from .processing.provider import RsGhostProvider

            self.provider = RsGhostProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 (QGIS API)
        """Add the toolbar button and the Raster menu entries."""
        self.initProcessing()
        self.toolbar = self.iface.addToolBar("RS Ghost")
        self.toolbar.setObjectName(TOOLBAR_NAME)
        self.toolbar.setToolTip("RS Ghost land-cover classification")
        main = self._add_action("Classify raster tiles…", self.show_dialog, "rsGhostClassify")
        self.toolbar.addAction(main)
        self._add_action("Assess accuracy…", lambda: self.open_algorithm("rsghost:assess"), "rsGhostAssess")
        self._add_action("Check dependencies…", self.show_dependencies, "rsGhostDependencies")
        self._add_action("Help (user guide)…", self.show_help, "rsGhostHelp")
        status = deps.check(dependency_folder())
        if not status.ok:
            main.setToolTip(missing_tooltip(status.problem))
            QgsMessageLog.logMessage(status.message(), LOG_TAG, Qgis.Warning)

    def _add_action(self, text: str, slot, name: str) -> QAction:
        action = QAction(QIcon(str(icon_path())), text, self.iface.mainWindow())
        action.setObjectName(name)
        action.triggered.connect(slot)
        self.iface.addPluginToRasterMenu(MENU, action)
        self.actions.append(action)
        return action

    def unload(self) -> None:
        """Remove every action, menu entry, the toolbar, the dialog and the provider."""
        if self.dialog is not None:
            self.dialog.shutdown()
            self.dialog.deleteLater()
            self.dialog = None
        for action in self.actions:
            self.iface.removePluginRasterMenu(MENU, action)
            action.deleteLater()
        self.actions = []
        if self.toolbar is not None:
            self.iface.mainWindow().removeToolBar(self.toolbar)
            self.toolbar.deleteLater()
            self.toolbar = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    def show_dialog(self) -> None:
        """Open the classification dialog, or explain what is missing to run it."""
        status = deps.check(dependency_folder())
        if not status.ok:
            self.show_dependencies(status)
            return
        if self.dialog is None:
            from .ui.dialog import ClassifyDialog

            self.dialog = ClassifyDialog(self.iface, self.iface.mainWindow())
        self.dialog.select_layer(self.iface.activeLayer())
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()

    def show_dependencies(self, status=None) -> None:
        """Show the dependency status, with the install command and a consented install."""
        from .ui.deps_dialog import show_dependency_dialog

        if not isinstance(status, deps.DependencyStatus):
            status = deps.check(dependency_folder())
        show_dependency_dialog(self.iface, status, dependency_folder())

    def show_help(self) -> None:
        """Open the user guide shipped with the plugin (it works offline)."""
        from .paths import help_path, open_help

        if not open_help():
            QgsMessageLog.logMessage(f"Could not open the user guide; it is {help_path()}", LOG_TAG, Qgis.Warning)

    def open_algorithm(self, algorithm_id: str) -> None:
        """Open a Processing algorithm's dialog."""
        import processing

        processing.execAlgorithmDialog(algorithm_id, {})
