"""A run's command line: recorded without secrets, and shown on the card without this machine's folders."""

from __future__ import annotations

import shlex

import pytest

from skin.commands import portable_command, recorded_command


@pytest.mark.parametrize("token_args", [["--hub_token", "hf_SECRET"], ["--hub_token=hf_SECRET"]])
def test_the_recorded_command_keeps_no_token(token_args):
    argv = ["--task", "condition_ham10000", *token_args, "--push_to_hub", "me/model", "--lora_r", "4"]
    command = recorded_command(argv)
    assert "hf_SECRET" not in command and "--hub_token" not in command
    assert shlex.split(command) == ["python", "train.py", "--task", "condition_ham10000", "--push_to_hub",
                                    "me/model", "--lora_r", "4"]


def test_the_recorded_command_quotes_a_folder_with_a_space():
    command = recorded_command(["--data_dir", "../my data/ham", "--tta", "true"])
    assert shlex.split(command)[2:] == ["--data_dir", "../my data/ham", "--tta", "true"]


def test_the_card_command_leaves_out_local_folders_and_secrets():
    recorded = ("python train.py --task condition_dermnet --data_dir ../shared/data/dermnet "
                "--dataset_cache_dir /work/scratch/hfds --lora_r 4 --output_dir /work/scratch/runs/clin_p7 "
                "--hub_token hf_OLD --init_adapter /home/me/adapter --resume_from_checkpoint=/tmp/ckpt-9 "
                "--tta true")
    assert shlex.split(portable_command(recorded)) == [
        "python", "train.py", "--task", "condition_dermnet", "--data_dir", "../shared/data/dermnet",
        "--lora_r", "4", "--run_name", "clin_p7", "--init_adapter", "INIT_ADAPTER", "--tta", "true"]


def test_a_given_run_name_is_not_doubled_and_a_config_file_stays():
    recorded = "python train.py configs/gpu/x.yaml --output_dir /abs/run --run_name mine --data_dir /mnt/ham"
    assert shlex.split(portable_command(recorded)) == [
        "python", "train.py", "configs/gpu/x.yaml", "--run_name", "mine", "--data_dir", "DATA_DIR"]


def test_the_run_environment_names_this_checkout_and_the_installed_versions():
    """A run records the commit it was trained at and the versions of the libraries that shape training:
    the same command under another commit or library can train a different model."""
    import subprocess
    from importlib import metadata

    from skin.commands import REPO_ROOT, run_environment

    env = run_environment()
    assert env["packages"]["torch"] == metadata.version("torch")
    assert env["packages"]["transformers"] == metadata.version("transformers")
    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert env["skinlens_commit"] == head.stdout.strip() and isinstance(env["uncommitted_changes"], bool)
    else:  # a copy without git history: nothing made up
        assert env["skinlens_commit"] is None and env["uncommitted_changes"] is None


def test_the_environment_outside_git_is_unknown_not_invented(monkeypatch, tmp_path):
    import skin.commands as commands

    monkeypatch.setattr(commands, "REPO_ROOT", tmp_path)  # no .git here
    env = commands.run_environment()
    assert env["skinlens_commit"] is None and env["uncommitted_changes"] is None
    assert commands.environment_sentence(env).startswith("Trained with a SkinLens copy outside git")


def test_the_card_sentence_of_an_environment():
    from skin.commands import environment_sentence

    env = {"skinlens_commit": "0123456789abcdef0123", "uncommitted_changes": True, "python": "3.11.7",
           "packages": {"torch": "2.14.1", "timm": None, "peft": "0.21.2"}}
    assert environment_sentence(env) == ("Trained with SkinLens commit `0123456789ab` with uncommitted changes, "
                                         "Python 3.11.7, torch 2.14.1, peft 0.21.2.")
    assert environment_sentence({**env, "uncommitted_changes": False}).startswith(
        "Trained with SkinLens commit `0123456789ab`, Python")
    assert environment_sentence({}) == ""
