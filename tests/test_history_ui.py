"""The "My history" panel, through its handlers as the page calls them, with a real ``gr.Request``.

One in-process service on the tiny test models (:mod:`tests.app_helpers`) and
a SQLite history; ann and bob are the ``username`` of the request, as Gradio
sets it from the signed-in session. The panel's events are private (not API
endpoints): tests/test_app.py checks that the public API is unchanged.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from app_history import (NO_SIGN_IN_HELP, OAUTH_PREFIX, HistoryHandlers, auth_from_env, oauth_enabled,
                         resolve_user)
from skin.history.store import HistoryStore
from skin.service.history import HistoryService
from tests.app_helpers import make_app_models
from tests.bad_uploads import skin_photo
from tests.history_helpers import entry


def _request(user: str | None) -> gr.Request:
    return gr.Request(username=user)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from skin.service import SkinLensService, load_config

    root = tmp_path_factory.mktemp("history-ui")
    return SkinLensService(load_config(make_app_models(root, with_age=False)))


@pytest.fixture
def history(service, tmp_path):
    with HistoryStore(f"sqlite:///{tmp_path / 'history.sqlite'}") as store:
        yield HistoryService(service, store)


@pytest.fixture(scope="module")
def analysed(service, tmp_path_factory):
    """The page's state after Analyse, for two photos of the same spot (the second a little brighter)."""
    from PIL import ImageEnhance

    root = tmp_path_factory.mktemp("photos")
    photo = skin_photo(seed=7)
    photo.save(root / "a.jpg", "JPEG", quality=92)
    ImageEnhance.Brightness(photo).enhance(1.03).save(root / "b.jpg", "JPEG", quality=92)
    return [{"path": str(root / n), "loaded": service.load_upload(str(root / n))} for n in ("a.jpg", "b.jpg")]


def _ids(view) -> list[str]:
    """The entry ids of a refreshed panel's table, newest first."""
    return [row[-1] for row in view[1]]


def _jpeg(state) -> bytes:
    buffer = io.BytesIO()
    state["loaded"].image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_two_users_cannot_reach_each_others_entries_through_the_panel(history, analysed, monkeypatch):
    on = HistoryHandlers(history)
    ann, bob = _request("ann"), _request("bob")
    history.store.save("ann", entry(0.2, note="older"))
    view = on.ui_save(analysed[0], "before", True, request=ann)  # the page's own save: models, noise, photo
    ann_ids = _ids(view)
    assert len(ann_ids) == 2 and view[1][0][1] == "before" and view[1][0][5] == "yes" and view[1][1][5] == ""
    assert any(k.startswith("condition:") for k in history.store.get("ann", ann_ids[0]).noise)
    assert [value for _, value in view[4].choices] == ann_ids  # the compare picker offers ann's entries

    bob_view = on.ui_view(request=bob)
    assert bob_view[1] == [] and bob_view[4].choices == [] and "bob" in bob_view[0]
    with pytest.raises(gr.Error, match="no entry"):
        on.ui_compare(*ann_ids, request=bob)
    assert on.ui_delete(ann_ids[0], request=bob)[0] == "No such entry in your history."
    bob_saved = _ids(on.ui_view(request=bob)) + [history.store.save("bob", entry(0.5)).id]
    json_path, csv_path = on.ui_export(request=bob)
    exported = json.loads(Path(json_path).read_text())
    assert [e["id"] for e in exported["entries"]] == bob_saved[-1:] and exported["user"] == "bob"
    assert not any(i in Path(csv_path).read_text() for i in ann_ids)
    with monkeypatch.context() as m:
        m.setattr("skin.service.history.EXPORT_TTL_S", -1)  # every earlier export is old
        newer = on.ui_export(request=bob)
    assert not Path(json_path).exists() and all(Path(p).exists() for p in newer)  # the old one's files went
    with pytest.raises(gr.Error, match="delete my whole history"):
        on.ui_delete_all(False, request=bob)
    *view, confirm = on.ui_delete_all(True, request=bob)
    assert view[0] == "Deleted all 1 entries." and view[1] == [] and confirm is False

    assert _ids(on.ui_view(request=ann)) == ann_ids
    assert _ids(on.ui_delete(ann_ids[0], request=ann)) == ann_ids[1:]


def test_trend_plot_draws_each_score_of_a_saved_series_with_its_uncertainty(history):
    from skin.history.verdict import K

    on = HistoryHandlers(history)
    for value, sd in ((0.2, 0.02), (0.25, 0.005), (0.4, 0.03)):
        history.store.save("ann", entry(value, noise={"condition:mel": sd, "age:age": 2 * sd}))
    figure = on.ui_view(request=_request("ann"))[2]
    trends = history.tab("ann").trends
    panels = [ax for ax in figure.axes if ax.has_data()]
    assert [ax.get_title().split(" ")[0] for ax in panels] == list(trends) == sorted(entry().scores)
    mel = trends["condition:mel"]
    np.testing.assert_allclose(mel.values, [0.2, 0.25, 0.4])
    np.testing.assert_allclose(mel.errors, [K * 0.02, K * 0.01, K * 0.03])  # 0.005 is below the 1-point floor
    for ax, series in zip(panels, trends.values(), strict=True):
        (bars,) = ax.containers  # one errorbar per panel: its line, caps and bars
        line, _, (segments,) = bars
        np.testing.assert_allclose(np.asarray(line.get_ydata(), dtype=float), series.values)
        half_widths = [abs(seg[1][1] - seg[0][1]) / 2 for seg in segments.get_segments()]
        np.testing.assert_allclose(half_widths, series.errors)


def test_compare_shows_verdicts_and_the_kept_photos_heatmaps_side_by_side(history, analysed):
    on = HistoryHandlers(history)
    ann = _request("ann")
    kept = [history.store.save("ann", entry(0.2, photo=_jpeg(state))).id for state in analysed]
    text, older, newer = on.ui_compare(*kept, request=ann)
    assert "| score | verdict | change | noise (±) | reason |" in text and "| condition:mel |" in text
    assert "condition model's Grad-CAM" in text
    assert older is not None and newer is not None and older.size == newer.size
    assert np.asarray(older).std() > 0 and np.asarray(older).tolist() != np.asarray(newer).tolist()

    unkept = history.store.save("ann", entry(0.3)).id
    text, older, newer = on.ui_compare(kept[0], unkept, request=ann)
    assert older is None and newer is None and "both photos kept" in text
    with pytest.raises(gr.Error, match="two different entries"):
        on.ui_compare(unkept, unkept, request=ann)


def test_compare_keeps_its_verdicts_when_the_heatmaps_cannot_be_drawn(history, analysed, monkeypatch):
    """Explain refuses a model that no longer reads a kept photo (its type read anew): the comparison's
    verdicts are still shown, with the reason instead of the heatmaps."""
    on = HistoryHandlers(history)
    kept = [history.store.save("ann", entry(0.2, photo=_jpeg(state))).id for state in analysed]

    def refuse(*args, **kwargs):
        raise ValueError("no explanation: this looks like a face photo (face, 90%)")

    monkeypatch.setattr(history.service, "explain", refuse)
    text, older, newer = on.ui_compare(*kept, request=_request("ann"))
    assert "| condition:mel |" in text and "no heatmaps: no explanation: this looks like a face photo" in text
    assert older is None and newer is None


def test_saving_needs_an_analysed_photo(history):
    with pytest.raises(gr.Error, match="analyse a photo first"):
        HistoryHandlers(history).ui_save(None, "", False, request=_request("ann"))


def test_without_sign_in_the_panel_says_how_to_set_it_up(service, history):
    import app

    view = HistoryHandlers(None).ui_view(request=_request(None))
    assert view[0] == NO_SIGN_IN_HELP and view[1] == []
    assert "sign in to keep a history" in NO_SIGN_IN_HELP.lower()
    assert "python -m skin.users add NAME" in NO_SIGN_IN_HELP and "SKINLENS_USERS" in NO_SIGN_IN_HELP
    page = json.dumps(app.build_demo(service).get_config_file(), default=str)
    assert "python -m skin.users add NAME" in page and "Save to my history" not in page
    assert "Photos are not stored." in page
    signed_in_page = json.dumps(app.build_demo(service, history).get_config_file(), default=str)
    assert "Save to my history" in signed_in_page and "unless you save one to My history" in signed_in_page
    # sign-in configured, nobody signed in: the panel asks to sign in and shows nothing
    view = HistoryHandlers(history).ui_view(request=_request(None))
    assert "Sign in to keep a history" in view[0] and view[1] == []
    with pytest.raises(gr.Error, match="sign in to keep a history"):
        HistoryHandlers(history).ui_save({"loaded": None}, "", False, request=_request(None))


def _profile(username: str) -> gr.OAuthProfile:
    return gr.OAuthProfile({"name": username.title(), "preferred_username": username,
                            "profile": f"https://huggingface.co/{username}", "picture": ""})


def test_oauth_user_comes_from_the_profile_and_only_on_an_oauth_space(monkeypatch, history, service):
    import app

    assert resolve_user(_request(None), _profile("ann"), oauth=True) == f"{OAUTH_PREFIX}ann"
    assert resolve_user(_request("bob"), None, oauth=True) is None  # no profile, no user: not auth='s name
    assert resolve_user(_request("bob"), _profile("ann"), oauth=False) == "bob"

    on = HistoryHandlers(history, oauth=True)
    history.store.save(resolve_user(None, _profile("ann"), oauth=True), entry())
    assert len(on.ui_view(request=_request(None), profile=_profile("ann"))[1]) == 1
    assert on.ui_view(request=_request(None), profile=_profile("bob"))[1] == []
    assert HistoryHandlers(history).ui_view(request=_request("ann"))[1] == []  # "ann" (password) ≠ "hf:ann"
    assert "Sign in with Hugging Face" in on.ui_view(request=_request("ann"))[0]

    for name in ("SYSTEM", "SPACE_ID", "OAUTH_CLIENT_ID", "SKINLENS_USERS"):
        monkeypatch.delenv(name, raising=False)
    assert not oauth_enabled() and auth_from_env() is None
    monkeypatch.setenv("SYSTEM", "spaces")
    monkeypatch.setenv("SPACE_ID", "someone/skinlens")
    assert not oauth_enabled()  # a Space without hf_oauth: today's behaviour
    monkeypatch.setenv("OAUTH_CLIENT_ID", "client")
    assert oauth_enabled()
    assert not oauth_enabled({"SPACE_ID": "someone/skinlens", "OAUTH_CLIENT_ID": "client"})  # not on a Space
    monkeypatch.setenv("SKINLENS_USERS", "/nonexistent/users.json")
    with pytest.warns(UserWarning, match="ignored on a Space with OAuth"):
        assert auth_from_env() is None

    # what the Space sets with hf_oauth: true (Gradio reads it at import); the provider is never contacted
    import gradio.oauth

    for name, value in (("OAUTH_CLIENT_ID", "client"), ("OAUTH_CLIENT_SECRET", "secret"),
                        ("OAUTH_SCOPES", "openid profile"), ("OPENID_PROVIDER_URL", "http://127.0.0.1:9")):
        monkeypatch.setattr(gradio.oauth, name, value)
    page = app.build_demo(service, history, oauth=True)
    assert page.expects_oauth  # a gr.LoginButton: Gradio adds the Hugging Face sign-in routes
    assert "/login/huggingface" in {getattr(r, "path", "") for r in page.app.routes}
    assert not app.build_demo(service, history).expects_oauth


def test_the_space_metadata_turns_hugging_face_sign_in_on():
    """The README's metadata block is the Space's configuration: ``hf_oauth: true`` makes the Space set
    ``OAUTH_CLIENT_ID``, which :func:`oauth_enabled` reads (read with huggingface_hub's own parser)."""
    from huggingface_hub import metadata_load

    meta = metadata_load(Path(__file__).resolve().parents[1] / "README.md")
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert meta["hf_oauth"] is True


def test_the_verdict_table_names_what_was_not_checked():
    from app_history import verdicts_markdown

    verdict = {"verdict": "improved", "change": -0.4, "noise": 0.03, "reason": ""}
    plain = verdicts_markdown({"comparable": True, "reason": "", "note": "", "verdicts": {"c:malignant": verdict}})
    noted = verdicts_markdown({"comparable": True, "reason": "", "note": "skin-tone estimates not compared",
                               "verdicts": {"c:malignant": verdict}})
    assert plain.splitlines()[0] == "**Comparable.**"
    assert noted.splitlines()[0] == "**Comparable.** (skin-tone estimates not compared.)"
    refused = verdicts_markdown({"comparable": False, "reason": "different photo type (face vs closeup)",
                                 "verdicts": {}})
    assert refused.splitlines()[0] == "**Not comparable:** different photo type (face vs closeup)"
