"""skin.paths: output folders made up front, or a message naming the option (no OSError trace)."""

from __future__ import annotations

import pytest

from skin.paths import make_output_dir


def test_output_dir_is_made_with_its_parents(tmp_path):
    out = tmp_path / "a" / "b"
    assert make_output_dir(out, "--out") == str(out) and out.is_dir()
    assert make_output_dir(out, "--out") == str(out)  # an existing folder is fine


def test_a_folder_that_cannot_be_made_names_the_option(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"cannot create the output folder .*file.txt/run.*: pass --output_dir a "
                                         r"folder you can write"):
        make_output_dir(blocker / "run", "--output_dir")


def test_cli_export_into_an_impossible_folder_is_a_message(tmp_path, capsys):
    from skin import data, hub

    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert data.main(["export", "ham10000", "--data-dir", str(tmp_path), "--out", str(blocker / "out")]) == 2
    assert "pass --out a folder you can write" in capsys.readouterr().err
    assert hub.main(["export", "--model", "default:age", "--out", str(blocker / "out")]) == 2
    assert "pass --out a folder you can write" in capsys.readouterr().err
