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
