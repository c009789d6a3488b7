"""The QGIS-free classification engine, a folder per part, each importing only the floors below:

    many/  adapt/        classify-many on Dask; a model adapted to the user's polygons
    classify/            the one pipeline: grid, strips, batching, evidence, sinks, results
    radiometry/          which bands feed the model, and how their values are scaled
    model/  sources/     the model (card, ONNX, runtime, head); what is read (rasters, polygons)
    *.py                 the ground floor: errors, options, atomic, outputs, crs, download, assess

docs/ENGINE.md lists every module.
"""
