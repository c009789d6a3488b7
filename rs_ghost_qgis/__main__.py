"""``python -m rs_ghost_qgis``: the headless command line (see rs_ghost_qgis.core.cli)."""

import sys

from rs_ghost_qgis.core.cli import main

if __name__ == "__main__":
    sys.exit(main())
