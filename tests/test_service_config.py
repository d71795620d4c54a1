"""skin.service.config: the skinlens.yaml schema, its defaults, and a clear error for each mistake."""

from __future__ import annotations

import pytest

from skin.service.config import (
    DEFAULT_CONFIG_PATH,
    PREDICTION_CACHE_SIZE,
    hub_offline_from_env,
    load_config,
)
from tests.bad_uploads import skin_photo


def test_config_defaults_and_env(monkeypatch, tmp_path):
    cfg = tmp_path / "skinlens.yaml"
    cfg.write_text("models:\n  condition: {task: condition_ham10000, model: cond}\n"
                   "  age: {task: age_utkface, model: age}\nmax_upload_mb: 1\n")
    (tmp_path / "cond").mkdir()
    monkeypatch.setenv("SKINLENS_CONFIG", str(cfg))
    config = load_config()
    assert set(config.models) == {"condition", "age"}
    assert config.models["condition"].model == str(tmp_path / "cond")  # relative to the config file
    assert config.models["age"].model == "age"  # not a folder: passed on as written
    assert config.models["age"].input == "face" and config.models["condition"].input == "closeup"
    assert config.max_upload_bytes == 2**20
    monkeypatch.setenv("SKINLENS_CONFIG", str(tmp_path / "absent.yaml"))
    with pytest.raises(ValueError, match="not found"):
        load_config()
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  x: {task: nope, model: a/b}\n")
    with pytest.raises(ValueError, match="unknown task"):
        load_config(bad)


def test_missing_default_file_gives_the_built_in_models(monkeypatch, tmp_path):
    import skin.service.config as config_module

    monkeypatch.delenv("SKINLENS_CONFIG", raising=False)
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", tmp_path / "skinlens.yaml")
    config = load_config()
    assert config.source == "built-in defaults"
    assert {k: s.model for k, s in config.models.items()} == {
        "condition": "default:condition", "clinical": "default:clinical", "age": "default:age"}


@pytest.mark.parametrize("text, message", [
    ("- a list\n", "must hold a mapping"),
    ("models: [a]\n", "'models' must map"),
    ("models:\n  x: {task: condition_ham10000}\n", "needs 'task'"),
    ("models:\n  x: {task: condition_ham10000, model: a/b, input: body}\n", "input must be one of"),
    ("models:\n  x: {task: condition_ham10000, model: a/b, abstain_below: 1.5}\n", r"in \[0, 1\)"),
    ("top_k: 0\n", "top_k must be"),
    ("examples: {path: a.png}\n", "must be a list"),
    ("models: {x: [\n", "not valid YAML"),
])
def test_config_mistakes_are_named(tmp_path, text, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(cfg)


def test_refuse_faces_defaults_by_dataset_and_is_checked(tmp_path):
    """Models of close-up-only datasets (HAM10000, PAD-UFES-20) refuse portraits by default; SCIN and
    Kaggle photos may show a face, so theirs answer; the key is a boolean and meaningless for face input."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  ham: {task: condition_ham10000, model: a/b}\n"
                   "  scin: {task: condition_scin, model: a/b}\n"
                   "  pad: {task: condition_pad_ufes20, model: a/b, refuse_faces: false}\n")
    models = load_config(cfg).models
    assert (models["ham"].refuse_faces, models["scin"].refuse_faces, models["pad"].refuse_faces) == (True, False, False)
    for bad, message in [("{task: condition_scin, model: a/b, refuse_faces: sometimes}", "must be true or false"),
                         ("{task: age_utkface, model: a/b, input: face, refuse_faces: true}", "drop refuse_faces")]:
        cfg.write_text(f"models:\n  x: {bad}\n")
        with pytest.raises(ValueError, match=message):
            load_config(cfg)


def test_example_photos_are_read_from_configured_paths_with_licences(tmp_path):
    skin_photo().save(tmp_path / "here.png")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("examples:\n"
                   "  - {path: here.png, caption: A lesion, licence: CC BY 4.0}\n"
                   "  - {path: ../absent/none.png, caption: Gone, licence: CC BY-NC 4.0}\n")
    config = load_config(cfg)
    assert [e.caption for e in config.examples] == ["A lesion", "Gone"]
    assert [e.path for e in config.available_examples()] == [str(tmp_path / "here.png")]
    cfg.write_text("examples:\n  - {path: here.png}\n")
    with pytest.raises(ValueError, match="licence"):
        load_config(cfg)


def test_repo_config_parses():
    cfg = load_config(DEFAULT_CONFIG_PATH)
    assert cfg.models["condition"].model == "default:condition"
    assert cfg.models["age"].input == "face"
    assert cfg.models["condition"].abstain_below == 0.5
    assert cfg.models["condition"].refuse_faces and not cfg.models["age"].refuse_faces
    assert len(cfg.examples) >= 3 and all(e.licence for e in cfg.examples)
    assert all("/shared/data/" in e.path for e in cfg.examples)  # read at run time, never shipped


@pytest.mark.parametrize("value, offline", [(None, True), ("1", True), ("true", True), ("0", False),
                                            ("false", False), ("", False)])
def test_the_app_is_offline_unless_told_otherwise(monkeypatch, value, offline):
    """Unset means offline for the app (unlike huggingface_hub): it downloads nothing nobody asked for."""
    if value is None:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub_offline_from_env() is offline


def test_prediction_cache_size_from_env(monkeypatch, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("top_k: 2\n")
    monkeypatch.delenv("SKINLENS_PREDICTION_CACHE", raising=False)
    assert load_config(cfg).prediction_cache == PREDICTION_CACHE_SIZE
    monkeypatch.setenv("SKINLENS_PREDICTION_CACHE", "0")
    assert load_config(cfg).prediction_cache == 0
    monkeypatch.setenv("SKINLENS_PREDICTION_CACHE", "-3")
    with pytest.raises(ValueError, match="SKINLENS_PREDICTION_CACHE"):
        load_config(cfg)


def test_the_shipped_clinical_model_reads_clinical_photos_only():
    """It has no class for healthy skin: on portraits it named a condition (bench/clinical_on_portraits.py), and
    the gate types no DermNet test photo a face, so leaving faces out costs it no answer there."""
    import json
    from pathlib import Path

    clinical = load_config(DEFAULT_CONFIG_PATH).models["clinical"]
    assert clinical.photo_types == ("clinical",)
    assert clinical.accepts("clinical") and not clinical.accepts("face") and not clinical.accepts("dermoscopy")
    measured = json.loads((Path(__file__).resolve().parents[1] / "bench" / "results" /
                           "clinical_on_portraits.json").read_text())
    assert "face" in measured["clinical_photo_types_measured"]  # measured with faces still answered
    assert measured["utkface_validation_portraits"]["face"]["answered"] > 0
    assert "face" not in measured["dermnet_test"]


def test_a_model_version_follows_its_files_and_its_framing(tmp_path, monkeypatch):
    """What a history entry keeps to tell a model update from a skin change."""
    import skin.faces
    from skin.service.config import ModelSpec
    from skin.service.loading import model_version

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    spec = ModelSpec(key="age", task="age_utkface", model=str(folder), input="face")
    first = model_version(spec)
    assert len(first) == 12 and model_version(spec) == first
    (folder / "model.safetensors").write_bytes(b"new weights")
    updated = model_version(spec)
    assert updated != first
    monkeypatch.setattr(skin.faces, "CHIP_SIDE", skin.faces.CHIP_SIDE + 0.1)  # the face framed otherwise
    assert model_version(spec) != updated
    shipped = load_config(DEFAULT_CONFIG_PATH).models
    assert len({model_version(s) for s in shipped.values()}) == len(shipped)
