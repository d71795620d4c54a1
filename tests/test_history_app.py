"""The history endpoints of the running app, signed in through ``gradio_client`` as two users.

``python app.py`` serves the tiny test models (:mod:`tests.app_helpers`) with a
users file (``SKINLENS_USERS``) and a SQLite history (``SKINLENS_DB``); ann and
bob each save, list, compare, export and delete, and neither ever reaches the
other's entries. The same photo saved twice is ``no meaningful change`` for
every score; the same photo darkened is ``not comparable``.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from skin.history.users import Users
from tests.app_helpers import RunningApp, make_app_models
from tests.bad_uploads import skin_photo

PASSWORDS = {"ann": "ann's long passphrase", "bob": "bob's long passphrase"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("history-app")
    users = Users(root / "users.json")
    for name, password in PASSWORDS.items():
        users.add(name, password)
    with RunningApp(make_app_models(root), root, auth=("ann", PASSWORDS["ann"]),
                    SKINLENS_USERS=str(root / "users.json"),
                    SKINLENS_DB=f"sqlite:///{root / 'history.sqlite'}") as running:
        yield running


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("photos")
    photo = skin_photo(seed=7)
    photo.save(root / "photo.jpg", "JPEG", quality=92)
    dark = Image.fromarray((np.asarray(photo, dtype=np.float32) * 0.15).astype(np.uint8))
    dark.save(root / "dark.jpg", "JPEG", quality=92)
    return str(root / "photo.jpg"), str(root / "dark.jpg")


def _client(app, name):
    from gradio_client import Client

    return Client(app.url, auth=(name, PASSWORDS[name]), verbose=False, download_files=False)


def test_wrong_password_is_refused(app):
    from gradio_client import Client

    with pytest.raises(Exception, match="(?i)login|credentials|auth|401"):
        Client(app.url, auth=("ann", "not the password"), verbose=False)


def test_two_users_history_is_private_and_verdicts_know_their_noise(app, photos):
    from gradio_client import handle_file

    photo, dark = photos
    ann, bob = _client(app, "ann"), _client(app, "bob")
    first = ann.predict(handle_file(photo), "first", True, api_name="/history_save")
    again = ann.predict(handle_file(photo), "", False, api_name="/history_save")
    darker = ann.predict(handle_file(dark), "", False, api_name="/history_save")
    assert set(first) == {"id", "saved_at"}
    listed = ann.predict(api_name="/history")["entries"]
    assert [e["id"] for e in listed] == [darker["id"], again["id"], first["id"]]
    assert listed[2]["note"] == "first" and listed[2]["has_photo"] and not listed[1]["has_photo"]
    # each entry names the version of every model that scored it, the same for the same models
    # and the version of the app's tone reading, so that a change of it is not taken for a change of light
    scored = {name.split(":", 1)[0] for name in listed[0]["scores"]}
    assert set(listed[0]["models"]) == scored | {"tone:reading"}
    assert all(len(v) == 12 for v in listed[0]["models"].values())
    assert listed[0]["models"] == listed[2]["models"]

    same = ann.predict(first["id"], again["id"], api_name="/compare")
    assert same["comparable"] and same["verdicts"]
    assert {v["verdict"] for v in same["verdicts"].values()} == {"no meaningful change"}
    darkened = ann.predict(first["id"], darker["id"], api_name="/compare")
    assert not darkened["comparable"] and "too_dark" in darkened["reason"]

    # bob sees nothing of ann's, and cannot compare, delete or export it
    assert bob.predict(api_name="/history")["entries"] == []
    with pytest.raises(Exception, match="no entry"):
        bob.predict(first["id"], again["id"], api_name="/compare")
    assert bob.predict(first["id"], api_name="/history_delete") == {"deleted": 0}
    bob_saved = bob.predict(handle_file(photo), "", False, api_name="/history_save")
    export = bob.predict(api_name="/history_export")
    with zipfile.ZipFile(export["path"] if isinstance(export, dict) else export) as zf:
        doc = json.loads(zf.read("history.json"))
        assert [e["id"] for e in doc["entries"]] == [bob_saved["id"]]
        assert first["id"] not in zf.read("history.csv").decode()
    assert bob.predict("all", api_name="/history_delete") == {"deleted": 1}

    assert ann.predict(first["id"], api_name="/history_delete") == {"deleted": 1}
    assert len(ann.predict(api_name="/history")["entries"]) == 2


def test_without_sign_in_the_endpoints_say_so():
    import gradio as gr

    from app_history import HistoryHandlers

    on = HistoryHandlers(None)
    for call in (lambda: on.api_history(request=None), lambda: on.api_history_delete("all", request=None),
                 lambda: on.api_history_export(request=None), lambda: on.api_compare("a", "b", request=None),
                 lambda: on.api_history_save("photo.jpg", request=None)):
        with pytest.raises(gr.Error, match="sign in to keep a history"):
            call()


def test_the_history_panel_adds_no_public_endpoint(app):
    """With sign-in the page has the My history panel; its events are private, the API stays the named ones."""
    named = _client(app, "ann").view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(named) == {"/predict", "/explain", "/fairness", "/history_save", "/history", "/history_delete",
                          "/history_export", "/compare"}
