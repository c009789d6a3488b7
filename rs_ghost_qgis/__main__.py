"""``python -m rs_ghost_qgis``: the headless command line (rs_ghost_qgis.cli.main)."""

import sys

from rs_ghost_qgis.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
