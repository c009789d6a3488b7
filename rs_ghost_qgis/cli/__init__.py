"""The headless command line face: ``python -m rs_ghost_qgis`` (``main``) and its PNG preview."""
