"""core.options' OptionText: one message, worded by each face, intact across processes."""

from __future__ import annotations

import pickle

from rs_ghost_qgis.core.errors import OutputError
from rs_ghost_qgis.core.options import OptionError, OptionText, face_message


def test_a_message_names_the_option_as_each_face_spells_it():
    text = OptionText("try {bands} {order}, or another {scaling}.", order="3,2,1")
    assert str(text) == "try Bands (--bands) 3,2,1, or another Scaling (--scale)."
    assert face_message(text, "cli") == "try --bands 3,2,1, or another --scale."
    assert face_message(text, "dialog") == "try Bands 3,2,1, or another Scaling."
    assert face_message(text, "processing") == "try BANDS 3,2,1, or another SCALING."


def test_user_text_with_braces_is_inserted_as_it_is():
    text = OptionText("{path} already exists; use {overwrite} to replace it.", path="/data/{x}.gpkg")
    assert face_message(text, "cli") == "/data/{x}.gpkg already exists; use --overwrite to replace it."


def test_errors_of_any_kind_carry_it_and_survive_pickling():
    # A Dask worker's warnings and errors reach the client pickled.
    for message in (
        OptionText("set {offset} to {value}.", value=1000),
        OutputError(OptionText("use {overwrite}.")),
        OptionError("offset", "{offset} is wrong: {value}.", value=-5),
    ):
        again = pickle.loads(pickle.dumps(message))
        for face in ("cli", "dialog", "processing"):
            assert face_message(again, face) == face_message(message, face)
        assert "--" not in face_message(again, "dialog") and "--" in face_message(again, "cli")


def test_plain_messages_pass_through():
    assert face_message("nothing to name", "cli") == "nothing to name"
    assert face_message(OutputError("disk full"), "dialog") == "disk full"
