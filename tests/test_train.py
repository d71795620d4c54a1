"""train.py end to end on tiny data: run folder, merged checkpoint, adapter, resume, errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tests.layouts import make_ham10000

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"}


def tiny_args(data_dir, out_dir, *extra):
    return [
        "--task", "condition_ham10000", "--data_dir", str(data_dir), "--dataset_cache_dir", str(out_dir / "cache"),
        "--output_dir", str(out_dir / "run"), "--run_name", "tiny", "--num_train_epochs", "2",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8", "--logging_steps", "1",
        "--n_boot", "20", "--seed", "0", "--use_cpu", "true", *extra,
    ]


@pytest.fixture(scope="module")
def ham(tmp_path_factory):
    return make_ham10000(tmp_path_factory.mktemp("ham")).data_dir


@pytest.fixture(scope="module")
def lora_run(ham, tmp_path_factory):
    import train

    out = tmp_path_factory.mktemp("lora")
    pushes = []
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # the push itself is tested against a Hub stand-in (test_hub_push)
        mp.setattr("skin.hub.push_run", lambda run_dir, repo, **kw: pushes.append((run_dir, repo, kw)))
        report = train.main(tiny_args(ham, out, "--model_name_or_path", "efficientnet_lite0", "--image_size", "32",
                                      "--finetune_mode", "lora", "--lora_r", "4", "--head_epochs", "1",
                                      "--loss", "focal", "--sampler", "sqrt", "--tta", "true",
                                      "--push_to_hub", "someone/tiny", "--hub_token", "hf_SECRET",
                                      "--hub_private_repo", "true"))
    assert pushes == [(str(out / "run"), "someone/tiny", {"token": "hf_SECRET", "private": True})]
    # peft's vocabulary check looked the wheel backbone's name up on the Hub at every checkpoint
    lookups = [str(w.message) for w in caught
               if "efficientnet_lite0" in str(w.message) or "remote file" in str(w.message)]
    assert not lookups, lookups
    return out / "run", report


def test_run_folder_has_reports_and_figures(lora_run):
    run, report = lora_run
    saved = json.loads((run / "report.json").read_text())
    for key in ("task", "dataset", "backbone", "mode", "trainable_parameters", "total_parameters", "test",
                "calibration", "fairness", "wall_time_s"):
        assert key in saved, key
    assert saved["trainable_parameters"] < saved["total_parameters"]
    assert "--lora_r 4" in saved["command"] and saved["command"].startswith("python train.py --task")
    assert set(saved["calibration"]) >= {"temperature", "ece_before", "ece_after"}
    # --tta changes the test metrics only: the temperature is fitted on the served inference, the photo alone
    assert saved["tta"] is True and saved["calibration"]["served"].startswith("single view")
    assert saved["calibration"]["over"] == "classes"
    assert {"accuracy", "balanced_accuracy", "macro_f1"} <= set(saved["test"])
    assert "sex" in saved["fairness"]
    assert (run / "metrics.csv").stat().st_size > 0 and (run / "args.json").is_file()
    for fig in saved["figures"].values():
        assert (run / fig).read_bytes()[:4] == b"\x89PNG"
    card = (run / "merged" / "README.md").read_text()
    assert "Not medical advice" in card and "model-index" in card
    # the run records what it was trained with, and its card says it under "Reproduce"
    from skin.commands import run_environment

    assert saved["environment"] == run_environment() and saved["environment"]["packages"]["peft"]
    assert f"peft {saved['environment']['packages']['peft']}" in card.split("## Reproduce", 1)[1]
    for checkpoint in run.glob("checkpoint-*"):  # the base model is still recorded in each checkpoint
        assert json.loads((checkpoint / "adapter_config.json").read_text())["base_model_name_or_path"] == \
            "efficientnet_lite0"
    # the token given for the push is in no file of the run (the card is published with the model)
    for path in run.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".md", ".csv"):
            assert "hf_SECRET" not in path.read_text(errors="replace"), path


def test_merged_checkpoint_loads_in_plain_pipeline(lora_run):
    run, _ = lora_run
    code = (
        "from transformers import pipeline; from PIL import Image; import json, sys;"
        f"p = pipeline('image-classification', model={str(run / 'merged')!r});"
        "out = p(Image.new('RGB', (40, 30), (180, 120, 100)), top_k=7);"
        "print(json.dumps(out))"
    )
    res = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert {o["label"] for o in out} == {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
    assert abs(sum(o["score"] for o in out) - 1) < 1e-4
    assert not list((run / "merged").glob("*.bin")), "weights must be safetensors"


def test_adapter_reloads_to_merged_logits(lora_run):
    import torch

    from skin.calibration import softmax
    from skin.hub import load_classifier
    from skin.modeling import load_adapter

    run, report = lora_run
    merged, processor = load_classifier(str(run / "merged"))
    model, _, _ = load_adapter(str(run / "adapter"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        T = report["calibration"]["temperature"]
        a = torch.softmax(merged(pixel_values=x).logits, 1)
        b = torch.from_numpy(softmax(model.eval()(pixel_values=x).logits.numpy(), T))
    assert torch.allclose(a, b.float(), atol=1e-4)


def test_partial_unfreezing_run_exports_and_reloads(ham, tmp_path, monkeypatch):
    """Phased schedule head → partial unfreezing: the adapter folder holds only the unfrozen stages, and
    base + adapter + temperature give the merged checkpoint's probabilities. Trained channels-last under
    bf16 autocast (the fast CPU path), with TrivialAugment and MixUp / CutMix batches, the exports are
    ordinary float32 tensors."""
    import torch

    import train
    from skin.calibration import softmax
    from skin.hub import load_classifier
    from skin.modeling import PARTIAL_WEIGHTS_FILE, load_adapter

    report = train.main(tiny_args(ham, tmp_path, "--model_name_or_path", "efficientnet_lite0", "--image_size", "32",
                                  "--finetune_mode", "partial", "--unfreeze_last", "1", "--head_epochs", "1",
                                  "--channels_last", "true", "--bf16", "true",
                                  "--auto_augment", "trivial", "--mixup_alpha", "0.2", "--cutmix_alpha", "1.0"))
    run = tmp_path / "run"
    assert json.loads((run / "args.json").read_text())["data"]["cutmix_alpha"] == 1.0
    assert report["mode"] == "partial" and report["trainable_parameters"] < report["total_parameters"]
    weights = run / "adapter" / PARTIAL_WEIGHTS_FILE
    assert weights.is_file() and weights.stat().st_size < 0.5 * (run / "merged" / "model.safetensors").stat().st_size
    merged, _ = load_classifier(str(run / "merged"))
    model, _, _ = load_adapter(str(run / "adapter"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a = torch.softmax(merged(pixel_values=x).logits, 1)
        b = torch.from_numpy(softmax(model(pixel_values=x).logits.numpy(), report["calibration"]["temperature"]))
    assert torch.allclose(a, b.float(), atol=1e-4)

    # Embedded as a default model: the unfrozen stages are stored as float16, half the size.
    import skin.hub

    monkeypatch.setattr(skin.hub, "MODELS_DIR", tmp_path / "models")
    dest = skin.hub.embed_run(str(run), "condition")
    assert (dest / "adapter" / PARTIAL_WEIGHTS_FILE).stat().st_size < 0.6 * weights.stat().st_size
    default, _ = load_classifier("default:condition")
    with torch.no_grad():
        c = torch.softmax(default(pixel_values=x).logits, 1)
    assert torch.allclose(a, c, atol=1e-2)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--finetune_mode", "adapter"], "--finetune_mode must be lora, head, full or partial"),
        (["--finetune_mode", "partial", "--unfreeze_last", "0"], "--unfreeze_last must be >= 1"),
        (["--loss", "masked_label_smoothing"], "ordinal"),
        (["--sampler", "balanced", "--loss", "cb_ce"], "choose one"),
        (["--model_name_or_path", "google/vit-base-patch16-224", "--image_size", "64"], "--image_size only"),
        (["--task", "nope"], "unknown task"),
        (["--model_name_or_path", "google/vit-base-patch16-224", "--channels_last", "true"], "--channels_last only"),
        (["--init_adapter", "tests"], "holds no adapter (adapter_config.json or partial_model.safetensors)"),
        (["--loss", "focal", "--mixup_alpha", "0.2"], "use --loss ce, label_smoothing, cb_ce"),
        (["--auto_augment", "autoaugment"], "--auto_augment must be one of none, trivial, randaugment"),
        (["--cutmix_alpha", "-1"], "must be >= 0"),
        (["--color_jitter", "-0.1"], "--color_jitter must be >= 0"),
        (["--crop_scale_min", "0"], "--crop_scale_min is the smallest share"),
        (["--rotation", "-5"], "--rotation is the largest angle"),
    ],
)
def test_bad_arguments_fail_at_parse_time_with_the_fix(ham, tmp_path, extra, message):
    res = subprocess.run([sys.executable, "train.py", *tiny_args(ham, tmp_path, *extra)], env=ENV, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_help_documents_every_option():
    res = subprocess.run([sys.executable, "train.py", "--help"], env=ENV, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0
    for opt in ("--finetune_mode", "--lora_r", "--head_epochs", "--loss", "--sampler", "--task", "--data_dir",
                "--push_to_hub", "--tta"):
        assert opt in res.stdout
    assert "CONFIG.yaml" in res.stdout and "override" in res.stdout


def test_yaml_config_is_accepted(ham, tmp_path):
    import yaml

    import train

    cfg = {"task": "condition_ham10000", "data_dir": str(ham), "output_dir": str(tmp_path / "run"),
           "finetune_mode": "head", "image_size": 32, "max_steps": 1, "use_cpu": True}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    model_args, data_args, training_args = train.parse_args([str(path)])
    assert model_args.finetune_mode == "head" and training_args.max_steps == 1 and data_args.data_dir == str(ham)


def test_an_output_dir_given_without_a_run_name_is_kept(ham, tmp_path):
    """--output_dir DIR with no --run_name writes the run folder to DIR (it used to be replaced by
    experiments/<task-model-mode>); with neither, the run goes to experiments/<task-model-mode>."""
    import train
    from skin.tasks import get_task

    base = ["--task", "condition_ham10000", "--data_dir", str(ham), "--use_cpu", "true"]
    for extra, expected in [(["--output_dir", str(tmp_path / "mine")], str(tmp_path / "mine")),
                            ([], os.path.join("experiments", "condition_ham10000-efficientnet_lite0-partial"))]:
        model_args, data_args, training_args = train.parse_args(base + ["--finetune_mode", "partial"] + extra)
        train.name_the_run(model_args, training_args, get_task(data_args.task))
        assert training_args.output_dir == expected
        assert training_args.run_name == "condition_ham10000-efficientnet_lite0-partial"


def test_config_file_then_command_line_overrides(ham, tmp_path):
    """``train.py config.yaml --opt v``: the file's values, overridden by the options after it."""
    import train

    path = tmp_path / "cfg.yaml"
    path.write_text("task: condition_ham10000\nfinetune_mode: lora\nlora_r: 8\nlearning_rate: 1.0e-3\n"
                    "num_train_epochs: 7\nuse_cpu: true\ndata_dir: /nowhere\n")
    model_args, data_args, training_args = train.parse_args([str(path), "--data_dir", str(ham), "--lora_r", "4"])
    assert (model_args.finetune_mode, model_args.lora_r, data_args.data_dir) == ("lora", 4, str(ham))
    assert training_args.learning_rate == 1e-3 and training_args.num_train_epochs == 7
    as_json = tmp_path / "cfg.json"
    as_json.write_text(json.dumps({"data_dir": str(ham), "finetune_mode": "head", "use_cpu": True}))
    assert train.parse_args([str(as_json), "--max_steps", "3"])[2].max_steps == 3


@pytest.mark.parametrize("text, message", [
    ("lora_rank: 8\n", "unknown option(s) lora_rank"),
    ("- task\n- age_utkface\n", "must map option names to values"),
    ("task: [unclosed\n", "not valid YAML"),
])
def test_bad_config_files_name_the_problem(tmp_path, text, message):
    import train

    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        train.parse_args([str(path)])
    with pytest.raises(ValueError, match="not found"):
        train.parse_args([str(tmp_path / "missing.yaml")])


@pytest.mark.parametrize("config", sorted((ROOT / "configs" / "gpu").glob("*.yaml")), ids=lambda p: p.stem)
def test_gpu_recipes_train_on_a_tiny_convnext(config, ham, tmp_path):
    """The GPU recipes in configs/gpu/ (not run at full scale here: no GPU) with every option
    kept but the backbone (a tiny random ConvNeXt with the Hub model's module names), the data
    (fixtures in the real layouts), the device (CPU, float32) and the length: they parse, train
    with the recipe's 8 data-loader workers, and put LoRA on pwconv1 / pwconv2."""
    import yaml
    from transformers import ConvNextConfig, ConvNextForImageClassification, ConvNextImageProcessor

    import train
    from tests.layouts import make_dermnet, make_utkface

    recipe = yaml.safe_load(config.read_text())
    assert recipe["model_name_or_path"].startswith("facebook/convnext") and recipe["finetune_mode"] == "lora"
    data = {"condition_ham10000": lambda: ham, "age_utkface": lambda: make_utkface(tmp_path / "data").data_dir,
            "condition_dermnet": lambda: make_dermnet(tmp_path / "data").data_dir}[recipe["task"]]()
    tiny = tmp_path / "convnext"
    ConvNextForImageClassification(ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1],
                                                  image_size=32)).save_pretrained(tiny)
    ConvNextImageProcessor(size={"shortest_edge": 32}).save_pretrained(tiny)
    report = train.main([str(config), "--model_name_or_path", str(tiny), "--data_dir", str(data),
                         "--output_dir", str(tmp_path / "run"), "--dataset_cache_dir", str(tmp_path / "cache"),
                         "--use_cpu", "true", "--bf16", "false",
                         "--num_train_epochs", "2", "--per_device_train_batch_size", "8", "--n_boot", "10"])
    assert report["task"] == recipe["task"] and report["mode"] == "lora"
    # the age model is calibrated over the age groups the app answers in, the others over their classes
    assert report["calibration"]["over"] == ("groups" if recipe["task"].startswith("age") else "classes")
    adapter = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == {"pwconv1", "pwconv2"} and adapter["r"] == recipe["lora_r"]


@pytest.mark.parametrize("flag", ["--activation_checkpointing", "--gradient_checkpointing"])
def test_lora_with_activation_checkpointing_trains_the_adapter(ham, tmp_path, flag):
    """--activation_checkpointing true (the memory-saving LoRA set-up of bench/bench_finetune.py; the old
    name --gradient_checkpointing too) on a tiny ViT: the LoRA weights of the checkpointed layers still
    receive gradients and change (with re-entrant checkpointing, the Trainer's old default, they silently
    stay zero: checked by hand)."""
    import warnings

    import torch
    from safetensors.torch import load_file
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    vit = tmp_path / "vit"
    ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=64, image_size=32, patch_size=8)).save_pretrained(vit)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(vit)
    import train

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FutureWarning)
        train.main(tiny_args(ham, tmp_path, "--model_name_or_path", str(vit), "--finetune_mode", "lora",
                             "--lora_r", "4", flag, "true", "--learning_rate", "1e-2", "--num_train_epochs", "1"))
    deprecated = sorted({str(w.message).split("`")[1] for w in caught
                         if w.category is FutureWarning and "checkpointing" in str(w.message)})
    # train.py itself uses the current names: only a user's old flag is warned about
    assert deprecated == ([] if flag == "--activation_checkpointing" else ["gradient_checkpointing"])
    weights = load_file(str(tmp_path / "run" / "adapter" / "adapter_model.safetensors"))
    lora_b = [v for k, v in weights.items() if "lora_B" in k and "layers.0." in k]
    assert lora_b and all(float(v.abs().sum()) > 0 for v in lora_b)  # B starts at zero: it trained


@pytest.mark.parametrize("mode", ["lora", "partial"])
def test_init_adapter_continues_a_saved_adapter(ham, tmp_path, mode):
    """--init_adapter starts from the saved weights and trains on: continued at a learning rate of
    1e-7, every trained tensor stays within 1e-4 of the saved one (AdamW moves a weight by at most
    about lr per step) yet is not identical, while a fresh head differs by about 0.02 on average.
    ``--image_size`` continues at a new resolution: the adapter and the merged processor record it."""
    import json

    import torch
    from safetensors.torch import load_file

    import train
    from skin.modeling import PARTIAL_WEIGHTS_FILE, create_model

    extra = ["--model_name_or_path", "efficientnet_lite0", "--image_size", "32", "--finetune_mode", mode,
             "--num_train_epochs", "1"] + (["--lora_r", "4"] if mode == "lora" else ["--unfreeze_last", "1"])
    train.main(tiny_args(ham, tmp_path / "first", *extra))
    first = tmp_path / "first" / "run" / "adapter"
    report = train.main(tiny_args(ham, tmp_path / "second", *extra, "--init_adapter", str(first),
                                  "--learning_rate", "1e-7", "--head_epochs", "0", "--image_size", "48"))
    assert report["mode"] == mode
    second = tmp_path / "second" / "run"
    assert json.loads((second / "adapter" / "skinlens_adapter.json").read_text())["image_size"] == 48
    merged_pp = json.loads((second / "merged" / "config.json").read_text())["pretrained_cfg"]
    assert merged_pp["input_size"] == [3, 48, 48]
    weights = "adapter_model.safetensors" if mode == "lora" else PARTIAL_WEIGHTS_FILE
    a, b = load_file(str(first / weights)), load_file(str(tmp_path / "second" / "run" / "adapter" / weights))
    assert a.keys() == b.keys()
    trained = [k for k in a if a[k].is_floating_point() and "running_" not in k]  # BN statistics move freely
    gaps = {k: float((a[k] - b[k]).abs().max()) for k in trained}
    assert max(gaps.values()) < 1e-4, max(gaps.items(), key=lambda kv: kv[1])  # from the saved weights ...
    assert max(gaps.values()) > 0  # ... and it trained on
    head = next(k for k in trained if "classifier.weight" in k)
    torch.manual_seed(1)
    fresh, _ = create_model("efficientnet_lite0", report["labels"], image_size=32)
    fresh_head = fresh.timm_model.classifier.weight.detach()
    assert float((fresh_head - a[head]).abs().mean()) > 0.01  # 100x the tolerance above: it tells them apart


def test_the_augmentation_follows_the_options_and_the_task(ham):
    import train

    lesions = train.parse_args(["--data_dir", str(ham), "--rotation", "0", "--color_jitter", "0.3"])[1].augment()
    assert (lesions.rotation, lesions.color_jitter, lesions.vflip) == (0, 0.3, True)
    faces = train.parse_args(["--task", "age_utkface", "--data_dir", str(ham)])[1].augment()
    assert faces.vflip is False  # faces are upright: no vertical flips unless asked for


def test_training_args_pickle_when_train_py_runs_under_another_main(ham, tmp_path):
    """Trainer pickles the arguments into each checkpoint's ``training_args.bin``. Run as
    ``python -m cProfile train.py`` (runpy: the script is not ``sys.modules["__main__"]``), a class
    defined in train.py could not be pickled and the run failed at its first checkpoint; defined in
    ``skin.training_args``, the run finishes and another program reads the file back."""
    res = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(tmp_path / "train.prof"), "train.py",
                          *tiny_args(ham, tmp_path, "--num_train_epochs", "1", "--image_size", "64")],
                         env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    saved = sorted((tmp_path / "run").glob("checkpoint-*/training_args.bin"))
    assert saved
    code = ("import sys, torch; a = torch.load(sys.argv[1], weights_only=False); "
            "print(type(a).__module__, a.run_name)")
    read = subprocess.run([sys.executable, "-c", code, str(saved[0])], env=ENV, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert read.returncode == 0, read.stderr[-2000:]
    assert read.stdout.split() == ["skin.training_args", "tiny"]
