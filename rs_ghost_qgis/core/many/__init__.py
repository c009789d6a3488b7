"""classify-many: many rasters (or huge ones) in blocks on a Dask cluster.

``job.run_job`` runs a job: each input raster (``raster``) is cut into blocks (``blocks``);
each block is one Dask task that runs the ordinary engine on a worker (``worker``); the
finished blocks are stored and recorded in the output folder (``manifest``) and merged into
the raster's outputs (``merge``). One run at a time writes into that folder (``lock``).
"""
