#!/usr/bin/env bash
# Idempotent set-up on Debian 12: QGIS 3.22 from apt, a venv over Debian's Python (so the
# QGIS bindings stay importable), and pinned pip packages. A second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="qgis python3-qgis python3-qgis-common qgis-providers python3-rasterio python3-matplotlib python3-pil xvfb xauth libtcmalloc-minimal4"
VENV=.venv
STAMP="$VENV/.setup-stamp"

missing=$( (dpkg-query -W -f='${Status} ${Package}\n' $APT_PACKAGES 2>/dev/null || true) \
          | awk '$3 == "installed" {print $4}' | sort | comm -13 - <(tr ' ' '\n' <<<"$APT_PACKAGES" | sort))
if [ -n "$missing" ]; then
  echo "setup: installing apt packages: $missing"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

if [ ! -x "$VENV/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi

# QGIS's own Processing plugins live outside site-packages.
echo /usr/share/qgis/python/plugins > "$VENV/lib/python3.11/site-packages/qgis-processing.pth"

want=$(cat requirements.txt constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "setup: installing pinned Python packages"
  "$VENV/bin/pip" install -q -r requirements.txt -c constraints.txt
  echo "$want" > "$STAMP"
fi
echo "setup: ready ($VENV)"
