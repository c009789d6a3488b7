"""What the engine reads: rasters through the RasterSource interface (rasterio outside QGIS), polygon layers."""
