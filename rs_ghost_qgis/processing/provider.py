"""The Processing provider "RS Ghost" (id ``rsghost``)."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..paths import icon_path, plugin_version


class RsGhostProvider(QgsProcessingProvider):
    """Classify, assess, train and adapt: the same engine as the dialog and the command line."""

    def id(self) -> str:
        """Short id used in algorithm ids, e.g. ``rsghost:classify``."""
        return "rsghost"

    def name(self) -> str:
        """Name shown in the toolbox."""
        return "RS Ghost"

    def longName(self) -> str:  # noqa: N802 (QGIS API)
        """Name with the version."""
        return f"RS Ghost land cover {plugin_version()}"

    def icon(self) -> QIcon:
        """The plugin icon."""
        return QIcon(str(icon_path()))

    def loadAlgorithms(self) -> None:  # noqa: N802 (QGIS API)
        """Add the algorithms; none of them imports onnxruntime until it runs."""
        from .adapt import AdaptAlgorithm
        from .assess import AssessAlgorithm
        from .classify import ClassifyAlgorithm
        from .train import TrainAlgorithm

        for algorithm in (ClassifyAlgorithm(), AssessAlgorithm(), TrainAlgorithm(), AdaptAlgorithm()):
            self.addAlgorithm(algorithm)
