"""RS Ghost: tile-by-tile land-cover classification of raster layers with a small ONNX model.

Importing this package imports neither QGIS nor torch: QGIS calls ``classFactory`` and only
then is the plugin (and with it QGIS) imported.
"""

# The tab of QGIS's log (View > Panels > Log Messages) where every part of the plugin writes.
LOG_TAG = "RS Ghost"


def classFactory(iface):  # noqa: N802 (the name QGIS looks for)
    """Create the plugin for QGIS; the import is lazy so the package stays QGIS-free."""
    from .plugin import RsGhostPlugin

    return RsGhostPlugin(iface)
