"""The QGIS-free classification engine: model card, runtime, tiling, radiometry, outputs."""
