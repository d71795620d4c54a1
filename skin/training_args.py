"""``train.py``'s ``TrainingArguments``: SkinLens defaults and the checks that name the fix.

In a module, not in ``train.py``, because Trainer pickles the arguments into every
checkpoint's ``training_args.bin``: a class defined in ``__main__`` pickles as
``__main__.SkinTrainingArguments``, which fails wherever the script does not run as
the real ``__main__`` (``python -m cProfile train.py``, runpy) and cannot be read back
from any other program.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainingArguments


@dataclass
class SkinTrainingArguments(TrainingArguments):
    """TrainingArguments with SkinLens defaults; ``--push_to_hub REPO`` pushes at the end."""

    output_dir: str | None = field(default=None, metadata={"help": "default: experiments/<run_name>"})
    run_name: str | None = field(default=None, metadata={"help": "run folder name (default: task-model-mode)"})
    push_to_hub: str | None = field(  # type: ignore[assignment]
        default=None, metadata={"help": "REPO: upload merged model, adapter and model card there after training"})
    eval_strategy: str = "epoch"
    save_strategy: str = "epoch"
    save_total_limit: int | None = 2
    logging_steps: int = 20
    report_to: str | None = "none"
    remove_unused_columns: bool = False
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 64
    learning_rate: float = 1e-3
    num_train_epochs: float = 5.0
    warmup_steps: float = 0.05
    lr_scheduler_type: str = "cosine"
    weight_decay: float = 1e-4
    dataloader_num_workers: int = 0
    load_best_model_at_end: bool = True
    metric_for_best_model: str | None = "eval_balanced_accuracy"

    def __post_init__(self):
        # Our push happens after export (merged + adapter + card), not per checkpoint.
        self.hub_repo = self.push_to_hub
        self.push_to_hub = False
        if self.output_dir is None:
            self.output_dir = os.path.join("experiments", self.run_name or "run")
        checkpointing = self.activation_checkpointing or self.gradient_checkpointing  # the old name still works
        no_kwargs = self.activation_checkpointing_kwargs is None and self.gradient_checkpointing_kwargs is None
        if checkpointing and no_kwargs:
            # Re-entrant checkpointing passes no gradient to LoRA weights when the layer inputs
            # do not require grad (frozen embeddings): the non-reentrant form does.
            self.activation_checkpointing_kwargs = {"use_reentrant": False}
        if self.resume_from_checkpoint and os.path.isdir(self.resume_from_checkpoint):
            check_checkpoint_complete(self.resume_from_checkpoint)
        super().__post_init__()


def check_checkpoint_complete(folder: str) -> None:
    """Refuse a folder Trainer cannot resume from, naming the fix: one with no ``trainer_state.json``
    (the run folder given instead of one of its ``checkpoint-N`` folders, or a checkpoint whose saving
    had not reached that file, which Trainer writes last), or one whose file is cut short (the run was
    stopped while writing it; its weights may be partial too). Trainer's own errors say neither."""
    from transformers import TrainerState
    from transformers.trainer import TRAINER_STATE_NAME

    state = os.path.join(folder, TRAINER_STATE_NAME)
    if not os.path.isfile(state):
        found = sorted((p.name for p in Path(folder).glob("checkpoint-*") if p.is_dir()),
                       key=lambda name: (len(name), name))  # checkpoint-6 before checkpoint-12
        raise ValueError(f"--resume_from_checkpoint {folder} holds no {TRAINER_STATE_NAME}: pass one of a run's "
                         "checkpoint-N folders" + (f" (here: {', '.join(found)})" if found else
                                                   "; a checkpoint a stopped run was still saving has none yet"))
    try:
        TrainerState.load_from_json(state)  # what Trainer reads on resuming
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"--resume_from_checkpoint {folder} is incomplete: its {TRAINER_STATE_NAME}, which "
                         f"Trainer writes last, is unreadable ({e}); the run was stopped while saving it. "
                         "Resume from the run's previous checkpoint-N folder") from e
