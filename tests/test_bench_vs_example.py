"""bench/bench_vs_example.py compares train.py with the transformers example on the same images and backbone."""

from __future__ import annotations

import argparse
import collections
import json

import pytest
import torch

from tests.bench_scripts import load_bench
from tests.layouts import make_ham10000


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    bench = load_bench("bench_vs_example")
    tmp = tmp_path_factory.mktemp("vs_example")
    args = argparse.Namespace(task="condition_ham10000", data_dir=str(make_ham10000(tmp / "data").data_dir),
                              cache_dir=str(tmp / "cache"), seed=42, train_samples=10, eval_samples=4,
                              model="efficientnet_lite0", image_size=64, epochs=1.0, learning_rate=1e-3, threads=1)
    folder, backbone, n_train, n_eval = bench.prepare(args, tmp / "work")
    return bench, args, folder, backbone, n_train, n_eval, tmp


def test_the_example_reads_the_very_rows_train_py_trains_and_validates_on(prepared):
    from datasets import Image

    from skin.data import load
    from skin.tasks import get_task

    bench, args, folder, _, n_train, n_eval, _ = prepared
    task = get_task(args.task)
    dsd = load(task.dataset, args.data_dir, cache_dir=args.cache_dir, **task.data_config)
    labels = task.labels(dsd["train"].features)
    # train.py's --max_train_samples / --max_eval_samples selections
    expected = {"train": dsd["train"].shuffle(seed=args.seed).select(range(n_train)),
                "validation": dsd["validation"].select(range(n_eval))}
    for split, rows in expected.items():
        rows = rows.cast_column("image", Image(decode=False))
        want = collections.Counter((labels[task.target(r)], r["image"]["path"]) for r in rows)
        got = collections.Counter((link.parent.name, str(link.resolve())) for link in (folder / split).glob("*/*"))
        assert got == want, split
    assert n_train == 10 and n_eval == min(4, len(dsd["validation"]))


def test_both_sides_load_one_backbone_at_one_input_size(prepared):
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from skin.modeling import create_model
    from skin.training import processor_spec

    _, args, folder, backbone, *_ = prepared
    # the example reads the size, mean and std from the processor the folder carries
    example = AutoImageProcessor.from_pretrained(backbone).data_config
    # the task's classes, the folder's (a tiny run may leave a class out of train/, and its head is then new)
    labels = json.loads((backbone / "config.json").read_text())["label_names"]  # timm_wrapper's id2label
    model, processor = create_model(str(backbone), labels)
    # the example's loading call (bench/example_recipe.py): the same weights, the head included
    theirs = AutoModelForImageClassification.from_pretrained(
        backbone, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)}, ignore_mismatched_sizes=True).state_dict()
    assert all(torch.equal(tensor, theirs[name]) for name, tensor in model.state_dict().items())
    assert processor_spec(processor) == {"size": args.image_size, "mean": list(example["mean"]),
                                         "std": list(example["std"])}
    assert example["input_size"][-1] == args.image_size


def test_the_example_recipe_trains_and_reports_the_compared_figures(prepared):
    bench, args, folder, backbone, *_, tmp = prepared
    row = bench.run_side("example", args, folder, backbone, tmp / "example_run")
    assert row["side"] == "example" and row["train_runtime_s"] > 0 and row["wall_s"] >= row["train_runtime_s"]
    # the runtime is rounded to 0.01 s
    assert row["train_images_per_s"] == pytest.approx(args.train_samples / row["train_runtime_s"], rel=0.05)
    assert 0 <= row["validation_balanced_accuracy"] <= 1 and 0 <= row["validation_accuracy"] <= 1


def test_the_timed_transforms_are_train_pys_own(prepared):
    import train

    bench, args, folder, backbone, *_ = prepared
    costs = bench.pipeline_costs(args, folder, backbone, n=4, rounds=1)
    assert set(costs) == {"decode only", "example", "train.py",
                          "train.py with torchvision's ColorJitter (Pillow's hue)", "train.py without colour jitter",
                          "train.py, example's augmentation"}
    assert all(v > 0 for v in costs.values())
    example = train.parse_args(["--task", args.task, "--data_dir", args.data_dir,
                                *bench.EXAMPLE_AUGMENTATION])[1].augment()
    assert (example.crop_scale_min, example.vflip, example.rotation, example.color_jitter) == (0.08, False, 0, 0)


def test_every_run_of_the_bench_starts_from_the_same_head(prepared, tmp_path):
    from safetensors.torch import load_file

    bench, args, _, backbone, *_ = prepared
    _, again, *_ = bench.prepare(args, tmp_path / "again")
    first, second = load_file(backbone / "model.safetensors"), load_file(again / "model.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_the_pillow_hue_side_differs_from_train_pys_only_in_its_colour_jitter(prepared):
    from torchvision import transforms as T

    from skin.training import ColorJitter

    bench, args, folder, backbone, *_ = prepared
    tfs = bench.pipeline_transforms(args, folder, backbone)
    ours, pillow = tfs["train.py"].transforms, tfs["train.py with torchvision's ColorJitter (Pillow's hue)"].transforms
    assert [type(t) for t in ours].count(ColorJitter) == 1
    swapped = [(a, b) for a, b in zip(ours, pillow) if type(a) is not type(b) or repr(a) != repr(b)]
    assert len(ours) == len(pillow) and len(swapped) == 1
    (a, b), = swapped
    assert isinstance(a, ColorJitter) and type(b) is T.ColorJitter
    assert (b.brightness, b.contrast, b.saturation, b.hue) == (a.brightness, a.contrast, a.saturation, a.hue)
