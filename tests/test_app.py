"""The running app, driven through gradio_client on 127.0.0.1 (the public's API).

``python app.py`` is started once per module in a subprocess, on a free port,
with ``SKINLENS_CONFIG`` pointing at two tiny real checkpoints (see
:mod:`tests.app_helpers`), exactly as a Space runs it. A second, in-process
app with no models checks that it still starts and says what is missing.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.app_helpers import HAM_LABELS, RunningApp, free_port, make_app_models, wait_for_app
from tests.bad_uploads import corpus, skin_photo

LIMIT = 1024 * 1024  # max_upload_mb: 1 in the test config


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """``(client, url, log_path, gradio_tmp)`` of ``python app.py`` serving tiny models."""
    root = tmp_path_factory.mktemp("app")
    with RunningApp(make_app_models(root), root) as app:
        yield app.client, app.url, app.log, root / "gradio-tmp"


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("uploads")
    items = corpus(LIMIT)
    for item in items:
        (out / item.name).mkdir()
        (out / item.name / item.filename).write_bytes(item.data)
    return out, items


@pytest.fixture(scope="module")
def good_photo(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("good") / "closeup.jpg"
    skin_photo(seed=7).save(p, "JPEG", quality=92)
    return str(p)


def test_named_endpoints_are_documented(app_server):
    client = app_server[0]
    api = client.view_api(return_format="dict", print_info=False)
    named = api["named_endpoints"]
    assert {"/predict", "/explain", "/fairness"} <= set(named)
    assert [p["parameter_name"] for p in named["/explain"]["parameters"]] == ["image", "task", "method", "target",
                                                                                 "photo_type"]
    # every value an endpoint returns is named for the caller (not gradio's "value_43")
    assert [r["label"] for r in named["/fairness"]["returns"]] == ["card", "result"]
    assert [r["label"] for r in named["/explain"]["returns"]] == ["heatmap", "result"]
    # UI-only events are private: the public API is exactly the named endpoints (history: app_history)
    assert set(named) == {"/predict", "/explain", "/fairness", "/history_save", "/history", "/history_delete",
                          "/history_export", "/compare"}


def test_predict_endpoint(app_server, good_photo):
    from gradio_client import handle_file

    res = app_server[0].predict(handle_file(good_photo), api_name="/predict")
    assert isinstance(res, dict)
    cond = res["tasks"]["condition"]
    assert cond["status"] == "ok" and cond["top_k"][0]["label"] in HAM_LABELS
    assert 0 <= cond["malignant"]["probability"] <= 1 and "Melanoma" in cond["malignant"]["classes"]
    assert "malignant" not in res["tasks"]["age"]
    assert res["quality"]["ok"] and res["tone"]["bucket"] in ("light", "medium", "dark")
    assert "age" in res["tasks"]
    json.dumps(res)


def test_explain_endpoint(app_server, good_photo):
    from gradio_client import handle_file
    from PIL import Image

    heatmap, info = app_server[0].predict(handle_file(good_photo), "condition", "gradcam", "",
                                          api_name="/explain")
    assert info["method"] == "gradcam" and info["target"] in HAM_LABELS
    path = heatmap["path"] if isinstance(heatmap, dict) else heatmap
    # download_files=False: the client returns the server's file reference
    assert path
    heatmap2, info2 = app_server[0].predict(handle_file(good_photo), "condition", "occlusion", "mel",
                                            api_name="/explain")
    assert info2["target"] == "mel"
    with pytest.raises(Exception, match="unknown explanation method"):
        app_server[0].predict(handle_file(good_photo), "condition", "lime", "", api_name="/explain")
    del Image


def test_fairness_endpoint(app_server):
    md, card = app_server[0].predict("condition", "dark", api_name="/fairness")
    assert card["measured"] and card["user_bucket"] == "dark"
    assert "▶ dark (you)" in md and any("thin data" in w for w in card["warnings"])
    assert [r["bucket"] for r in card["missed_cancers"]["rows"]] == ["light", "medium", "dark"]
    assert "Cancers the single answer missed" in md
    md2, card2 = app_server[0].predict("condition", "", api_name="/fairness")
    assert card2["user_bucket"] is None


def test_bad_upload_corpus_through_the_app(app_server, corpus_dir, good_photo):
    """Every kind of bad upload gets a clear message; the server keeps serving."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client = app_server[0]
    out, items = corpus_dir
    assert len({i.name for i in items}) >= 15
    seen = {}
    for item in items:
        path = str(out / item.name / item.filename)
        if item.expect == "error":
            with pytest.raises(AppError) as err:
                client.predict(handle_file(path), api_name="/predict")
            msg = str(err.value)
            assert item.keyword.lower() in msg.lower(), f"{item.name}: {msg}"
            seen[item.name] = msg
        else:
            res = client.predict(handle_file(path), api_name="/predict")
            if item.expect == "ok":
                notes = " ".join(res["image"]["notes"]).lower()
                assert item.keyword.lower() in notes, f"{item.name}: {res['image']}"
                assert res["tasks"]["condition"]["status"] in ("ok", "abstain")
            else:  # abstain
                task = res["tasks"][item.task]
                assert task["abstained"] and item.keyword in task["reason"], f"{item.name}: {task}"
            seen[item.name] = "ok"
    # the rotated photos (JPEG, iPhone HEIC, AVIF) were analysed upright
    rotated = (("exif_rotated", "phone.jpg"), ("heic_photo", "IMG_0002.HEIC"), ("avif_photo", "photo.avif"))
    for name, filename in rotated:
        res = client.predict(handle_file(str(out / name / filename)), api_name="/predict")
        assert (res["image"]["width"], res["image"]["height"]) == (320, 240), name
    # and after all of that the server still answers a good request
    res = client.predict(handle_file(good_photo), api_name="/predict")
    assert res["tasks"]["condition"]["status"] == "ok"
    assert len(seen) == len(items)


def test_uploads_do_not_outlive_the_cache_window(app_server):
    """Gradio's temp copies are deleted on a schedule (delete_cache) — configured, not stored forever."""
    import app as app_module

    every, age = app_module.DELETE_CACHE
    assert every <= 300 and age <= 600
    assert app_module.launch_kwargs(app_module.service)["share"] is False


@pytest.fixture(scope="module")
def no_model_app(tmp_path_factory):
    """An in-process app whose models were never built."""
    import skin.hub
    from skin.service import SkinLensService, load_config

    root = tmp_path_factory.mktemp("nomodels")
    cfg = root / "skinlens.yaml"
    cfg.write_text("models:\n  condition: {task: condition_ham10000, model: 'default:condition'}\n"
                   "  age: {task: age_utkface, model: 'default:age'}\n")
    old = skin.hub.MODELS_DIR
    skin.hub.MODELS_DIR = root / "models"
    import app as app_module

    service = SkinLensService(load_config(cfg))
    demo = app_module.build_demo(service)
    demo.queue()
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            **{k: v for k, v in app_module.launch_kwargs(service).items() if k != "share"}, quiet=True)
    try:
        yield wait_for_app(url), service
    finally:
        demo.close()
        skin.hub.MODELS_DIR = old


def test_app_starts_without_models_and_says_what_is_missing(no_model_app, good_photo):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client, service = no_model_app
    from app_markdown import notice_markdown  # the page's notice
    notice = notice_markdown(service.status(), service.gate())
    assert "default:condition" in notice and "default:age" in notice and "README.md" in notice
    # no models/phototype either: the page says the photo-type gate is off and how to build it
    assert not service.gate()["on"] and "Photo-type gate off" in notice and "python -m skin.phototype train" in notice
    with pytest.raises(AppError, match="README.md"):
        client.predict(handle_file(good_photo), api_name="/predict")
    md, card = client.predict("condition", "light", api_name="/fairness")
    assert not card["measured"] and card["warnings"]


def test_example_photos_are_offered_with_their_licences(tmp_path):
    """Configured example photos that exist are offered under the upload box; their licences are shown."""
    import app
    from skin.service import SkinLensService, load_config

    skin_photo(seed=2).save(tmp_path / "lesion.png")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("examples:\n  - {path: lesion.png, caption: Example lesion, licence: CC BY 4.0 — test}\n"
                   "  - {path: missing.png, caption: Missing, licence: CC0}\n")
    demo = app.build_demo(SkinLensService(load_config(cfg)))
    config = json.dumps(demo.get_config_file(), default=str)
    assert "Example lesion" in config and "CC BY 4.0" in config
    assert "Missing" not in config


def test_importing_app_builds_the_page_and_nothing_else(tmp_path):
    """``import app`` (tests, benchmarks, ``gradio app.py``) sets no environment variable, loads no model and
    starts no warm-up: those happen under ``__main__``. (Gradio itself sets HF_HUB_DISABLE_TELEMETRY when a
    page is built with ``analytics_enabled=False``; nothing else may change.)"""
    import subprocess
    import sys

    from tests.app_helpers import REPO_ROOT

    check = ("import os, threading; before = dict(os.environ); import app; "
             "after = {k: v for k, v in os.environ.items() if k != 'HF_HUB_DISABLE_TELEMETRY'}; "
             "assert after == before, set(after.items()) ^ set(before.items()); "
             "assert app.service._models == {}, app.service._models; "
             "assert 'warm-up' not in [t.name for t in threading.enumerate()]; "
             "assert app.demo.analytics_enabled is False; print('ok')")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "HF_HUB_"))}
    out = subprocess.run([sys.executable, "-c", check], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_explain_panel_follows_the_model_that_read_the_photo():
    """After Analyse the Explain panel shows a model that read the photo: the one chosen if it did, else the
    first that did; when none did (out of scope, or no model available) the choice is left alone."""
    from app import explained_model

    def result(**tasks):  # False: routed away; "guesses": abstained under the threshold; True: answered
        entry = {False: {"abstained": True}, "guesses": {"abstained": True, "top_k": [{"label": "x"}]},
                 True: {"abstained": False, "top_k": [{"label": "x"}]}}
        return {"tasks": {k: entry[read] for k, read in tasks.items()}}

    assert explained_model(result(condition=False, clinical=True, age=False), "condition") == "clinical"
    assert explained_model(result(condition=False, clinical=True, age=True), "age") == "age"
    assert explained_model(result(condition=True, clinical=False, age=False), "age") == "condition"
    assert explained_model(result(condition=False, clinical=False, age=False), "age") == "age"
    # a model that answered comes before one that only guessed (a face: the age answered, the clinical guessed)
    assert explained_model(result(condition=False, clinical="guesses", age=True), "condition") == "age"
    assert explained_model(result(condition=False, clinical="guesses", age="guesses"), "condition") == "clinical"


def test_fairness_cards_of_the_models_that_read_the_photo_come_first():
    """After Analyse the first fairness card is that of the model that answered, not the configured first
    model's, which the photo type routed away; the others follow under a heading saying they did not
    read the photo. A picture no model read keeps the configured order, with no heading."""
    from app import OTHER_CARDS_HEADING, fairness_cards

    def result(**tasks):
        entry = {False: {"abstained": True}, "guesses": {"abstained": True, "top_k": [{"label": "x"}]},
                 True: {"abstained": False, "top_k": [{"label": "x"}]}}
        return {"tasks": {k: entry[read] for k, read in tasks.items()}}

    keys = ["condition", "clinical", "age"]

    def cards(res):
        return fairness_cards(res, keys, lambda key: f"card {key}").split("\n\n---\n\n")

    assert cards(result(condition=False, clinical=True, age=False)) == [
        "card clinical", OTHER_CARDS_HEADING, "card condition", "card age"]
    assert cards(result(condition=False, clinical="guesses", age=True)) == [
        "card age", "card clinical", OTHER_CARDS_HEADING, "card condition"]
    assert cards(result(condition=True, clinical=True, age=True)) == ["card condition", "card clinical", "card age"]
    assert cards(result(condition=False, clinical=False, age=False)) == ["card condition", "card clinical",
                                                                         "card age"]
