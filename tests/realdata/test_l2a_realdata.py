"""The bundled model on real Sentinel-2 L2A: weak labels from near infrared, and the Demmin wheat.

The spectral check (training/l2a.py) is the project's guard that the L2A mapping keeps working:
clear water must come out as water, dense vegetation neither as water nor as built-up. The
thresholds sit a few points below what the shipped model measured (results/l2a/), so a model
or a mapping that gets worse fails here.
"""

from __future__ import annotations

import os

import pytest

from rs_ghost_qgis.core.model.runtime import default_model_path
from training import l2a

pytestmark = pytest.mark.realdata
PATCHES = "l2a_unlabelled/patches_b02_b03_b04_b08.npz"
DEMMIN = "geotiff/sentinel2_demmin_germany_20230603.tif"
# Guards a little below what the shipped int8 model measured (results/l2a/README.md): held-out
# water 18 of 18 (100 %), held-out dense vegetation called water or built-up 23 of 192 (12.0 %);
# Demmin wheat 6.0 % farmland, 23.8 % water. The targets (95 %, 1 %, 90 % and none)
# are not all met yet; these only keep it from getting worse.
WATER_CALLED_WATER_AT_LEAST = 0.90
VEGETATION_CALLED_WATER_OR_BUILT_AT_MOST = 0.15
WHEAT_FARMLAND_AT_LEAST = 0.03
WHEAT_WATER_AT_MOST = 0.35


@pytest.fixture(scope="module")
def patches(shared_data):
    path = shared_data / PATCHES
    if not path.is_file():
        message = f"the L2A tier needs {path}; it is not there"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " and CI=true requires it")
        pytest.skip(message)
    return l2a.load_patches(path)


def test_the_bundled_model_carries_an_l2a_mapping():
    card = l2a.load_model(default_model_path()).card
    assert set(card.product_mappings["l2a"]["bands"]) == set(card.bands)


def test_held_out_l2a_water_and_vegetation(patches):
    images, bands = patches
    report = l2a.spectral_check(default_model_path(), images, bands, "l2a")
    held_out = report["held_out"]
    assert held_out["water"]["patches"] >= 10 and held_out["vegetation"]["patches"] >= 100
    assert held_out["water"]["share"] >= WATER_CALLED_WATER_AT_LEAST, held_out["water"]
    assert held_out["vegetation"]["share"] <= VEGETATION_CALLED_WATER_OR_BUILT_AT_MOST, held_out["vegetation"]


def test_the_l2a_curves_beat_the_l1c_mapping_on_l2a_water(patches):
    images, bands = patches
    as_l1c = l2a.spectral_check(default_model_path(), images, bands, "l1c")["all"]["water"]["share"]
    as_l2a = l2a.spectral_check(default_model_path(), images, bands, "l2a")["all"]["water"]["share"]
    assert as_l2a > as_l1c


def test_the_demmin_wheat_does_not_get_worse(shared_data, tmp_path):
    report = l2a.wheat_check(default_model_path(), shared_data / DEMMIN, "auto", tmp_path)
    assert "Sentinel-2 L2A" in report["scaling"]  # told by its values: the scene has no level tag
    assert report["tiles"] >= 60
    assert report["farmland"] >= WHEAT_FARMLAND_AT_LEAST, report["classes"]
    assert report["water"] <= WHEAT_WATER_AT_MOST, report["classes"]
