"""The transformers image-classification example's recipe, as the other side of ``bench_vs_example.py``.

What ``examples/pytorch/image-classification/run_image_classification.py`` does
with a folder of images, written again here in a few lines (its code is not
copied) so that the benchmark needs no Hub and no ``evaluate.load``:

* ``load_dataset("imagefolder")`` on ``FOLDER/train`` and ``FOLDER/validation``;
* the model and its image processor from ``--model`` with ``AutoModelForImageClassification``;
* training transform ``RandomResizedCrop(size)`` (scale 0.08-1), ``RandomHorizontalFlip``,
  ``ToTensor``, ``Normalize``; evaluation ``Resize`` + ``CenterCrop``; applied with ``set_transform``;
* a plain ``Trainer``: evaluation and a checkpoint every epoch, the best one loaded at
  the end, then ``save_model`` and a last ``evaluate``.

Options the example leaves to ``TrainingArguments`` are given the values
``train.py`` uses (batch sizes, learning rate, epochs, seed), so only the
recipe differs. Prints one JSON line: Trainer's training samples per second,
its training time, the process's wall time, and validation accuracy and balanced
accuracy (scikit-learn's, on the same images as ``train.py``'s validation).

    python bench/example_recipe.py --folder DIR --model BACKBONE_DIR --output_dir OUT --epochs 1
"""

from __future__ import annotations

import argparse
import json
import time

STARTED = time.time()


def main() -> None:
    import numpy as np
    import torch
    from datasets import load_dataset
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from torchvision.transforms import (CenterCrop, Compose, Normalize, RandomHorizontalFlip, RandomResizedCrop,
                                        Resize, ToTensor)
    from transformers import AutoImageProcessor, AutoModelForImageClassification, Trainer, TrainingArguments

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", required=True, help="imagefolder layout: train/<class>/*, validation/<class>/*")
    ap.add_argument("--model", required=True, help="a model folder AutoModelForImageClassification loads")
    ap.add_argument("--output_dir", required=True)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--learning_rate", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--eval_batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache_dir", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ds = load_dataset("imagefolder", data_dir=args.folder, cache_dir=args.cache_dir)
    labels = ds["train"].features["label"].names
    model = AutoModelForImageClassification.from_pretrained(
        args.model, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)}, ignore_mismatched_sizes=True)
    processor = AutoImageProcessor.from_pretrained(args.model)
    config = getattr(processor, "data_config", None)  # a timm model's processor
    if config:
        size, mean, std = config["input_size"][-1], config["mean"], config["std"]
    else:
        size = processor.size.get("height") or processor.size["shortest_edge"]
        mean, std = processor.image_mean, processor.image_std
    normalize = Normalize(mean=mean, std=std)
    train_tf = Compose([RandomResizedCrop(size), RandomHorizontalFlip(), ToTensor(), normalize])
    eval_tf = Compose([Resize(size), CenterCrop(size), ToTensor(), normalize])

    def with_pixels(tf):
        def fn(batch):
            batch["pixel_values"] = [tf(image.convert("RGB")) for image in batch["image"]]
            return batch
        return fn

    ds["train"].set_transform(with_pixels(train_tf))
    ds["validation"].set_transform(with_pixels(eval_tf))

    def collate(examples):
        return {"pixel_values": torch.stack([e["pixel_values"] for e in examples]),
                "labels": torch.tensor([e["label"] for e in examples])}

    def compute_metrics(pred):
        predicted = np.argmax(pred.predictions, axis=1)
        return {"accuracy": accuracy_score(pred.label_ids, predicted),
                "balanced_accuracy": balanced_accuracy_score(pred.label_ids, predicted)}

    training_args = TrainingArguments(
        output_dir=args.output_dir, per_device_train_batch_size=args.batch, per_device_eval_batch_size=args.eval_batch,
        learning_rate=args.learning_rate, num_train_epochs=args.epochs, eval_strategy="epoch", save_strategy="epoch",
        load_best_model_at_end=True, metric_for_best_model="accuracy", save_total_limit=2, logging_steps=20,
        remove_unused_columns=False, report_to="none", seed=args.seed, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=training_args, train_dataset=ds["train"], eval_dataset=ds["validation"],
                      compute_metrics=compute_metrics, data_collator=collate)
    result = trainer.train()
    trainer.save_model()
    metrics = trainer.evaluate()
    print(json.dumps({
        "train_samples_per_second": result.metrics["train_samples_per_second"],
        "train_runtime_s": result.metrics["train_runtime"], "wall_s": time.time() - STARTED,
        "validation_accuracy": metrics["eval_accuracy"],
        "validation_balanced_accuracy": metrics["eval_balanced_accuracy"],
    }))


if __name__ == "__main__":
    main()
