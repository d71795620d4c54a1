"""A training run's command line and environment: as the run records them, and as a model card shows them.

``report.json`` keeps the command that trained a model, and the card published
with the model quotes it under "Reproduce". Two things must not travel that way:
a secret (``--hub_token``, which would otherwise be pushed to the Hub in the
card) and this machine's own folders (``--output_dir /scratch/...``), which
mean nothing to a reader and change no result. Beside the command the report
keeps the SkinLens commit and library versions it ran with
(:func:`run_environment`), without which the command alone does not say what
was trained.
"""

from __future__ import annotations

import platform
import shlex
import subprocess
from importlib import metadata
from pathlib import Path

#: Options whose value is a secret: never recorded, never shown.
SECRET_OPTIONS = ("--hub_token",)
#: Options that say where this machine keeps things, not what is trained: left off the card.
LOCAL_OPTIONS = ("--output_dir", "--dataset_cache_dir", "--logging_dir", "--resume_from_checkpoint")


def _split_options(argv: list[str]):
    """``(option, value, tokens)`` per option of ``argv`` (``value`` ``None`` for a lone flag or word)."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("--") and "=" in token:
            name, value = token.split("=", 1)
            yield name, value, [token]
            i += 1
        elif token.startswith("--") and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            yield token, argv[i + 1], argv[i:i + 2]
            i += 2
        else:
            yield token, None, [token]
            i += 1


def drop_options(argv: list[str], names) -> list[str]:
    """``argv`` without the options in ``names``, each with its value (``--opt V`` or ``--opt=V``)."""
    return [tok for name, _, tokens in _split_options(list(argv)) if name not in names for tok in tokens]


def recorded_command(argv: list[str]) -> str:
    """``python train.py ARGS`` as the run records it: shell-quoted (a folder with a space stays one
    argument) and without the values of :data:`SECRET_OPTIONS`."""
    return shlex.join(["python", "train.py", *drop_options(argv, SECRET_OPTIONS)])


def portable_command(command: str) -> str:
    """A recorded command as a model card shows it: secrets and :data:`LOCAL_OPTIONS` left out (the
    run folder's name kept as ``--run_name``), and any other absolute path replaced by a placeholder
    named after its option (``--data_dir /mnt/x`` → ``--data_dir DATA_DIR``)."""
    words = shlex.split(command)
    head = words[:2] if words[:2] == ["python", "train.py"] else []
    options = list(_split_options(words[len(head):]))
    names = {name for name, _, _ in options}
    out = list(head)
    for name, value, tokens in options:
        if name in SECRET_OPTIONS:
            continue
        if name in LOCAL_OPTIONS:
            if name == "--output_dir" and value and "--run_name" not in names:
                out += ["--run_name", value.rstrip("/").rsplit("/", 1)[-1]]
            continue
        if value is not None and value.startswith("/"):
            out += [name, name.lstrip("-").upper()]
            continue
        out += tokens
    return shlex.join(out)


#: The distributions whose versions change what a run trains or how it is measured: each run's
#: ``report.json`` records them (``environment``), and its model card quotes them under "Reproduce".
RECORDED_PACKAGES = ("torch", "torchvision", "transformers", "peft", "timm", "accelerate", "datasets",
                     "scikit-learn", "numpy", "pillow", "opencv-python-headless", "fairlearn")
#: The repository whose commit a run records: the folder above ``skin/``.
REPO_ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    """``git ARGS`` in :data:`REPO_ROOT`, or ``None`` where git or the repository is missing."""
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def run_environment() -> dict:
    """What a run was trained with, beside its command: SkinLens's git commit (``None`` outside a git
    checkout) and whether tracked files had uncommitted changes, Python, and the version of each of
    :data:`RECORDED_PACKAGES` (``None`` if not installed). The same command under another commit or
    library version can train a different model (an augmentation step rewritten, a default changed)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    packages = {}
    for name in RECORDED_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {"skinlens_commit": commit, "uncommitted_changes": None if status is None else bool(status),
            "python": platform.python_version(), "packages": packages}


def environment_sentence(environment: dict) -> str:
    """A run's :func:`run_environment` as a model card says it ("" when the run did not record one)."""
    if not environment:
        return ""
    commit = environment.get("skinlens_commit")
    if commit:
        where = f"SkinLens commit `{commit[:12]}`"
        if environment.get("uncommitted_changes"):
            where += " with uncommitted changes"
    else:
        where = "a SkinLens copy outside git (commit unknown)"
    parts = [f"Python {environment.get('python')}"]
    parts += [f"{name} {version}" for name, version in (environment.get("packages") or {}).items() if version]
    return f"Trained with {where}, {', '.join(parts)}."
