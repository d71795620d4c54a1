"""The users file: salted scrypt hashes (never the password), verification, and the CLI on standard input."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from skin.history.users import SCRYPT_N, SCRYPT_P, SCRYPT_R, Users, UsersFileError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "correct horse battery"


def test_hash_is_salted_scrypt_and_never_the_password(tmp_path):
    path = tmp_path / "users.json"
    users = Users(path)
    users.add("ann", PASSWORD)
    users.add("bob", PASSWORD)
    text = path.read_text()
    assert PASSWORD not in text and PASSWORD.encode().hex() not in text
    doc = json.loads(text)
    ann, bob = doc["users"]["ann"], doc["users"]["bob"]
    assert (ann["n"], ann["r"], ann["p"]) == (SCRYPT_N, SCRYPT_R, SCRYPT_P) == (2**14, 8, 1)
    assert len(bytes.fromhex(ann["salt"])) == 16 and ann["salt"] != bob["salt"] and ann["hash"] != bob["hash"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_verify(tmp_path):
    path = tmp_path / "users.json"
    Users(path).add("ann", PASSWORD)
    users = Users(path, must_exist=True)
    assert users.verify("ann", PASSWORD)
    assert not users.verify("ann", PASSWORD + "!")
    assert not users.verify("ann", "")
    assert not users.verify("nobody", PASSWORD)
    Users(path).add("ann", "a new passphrase")  # replaces
    assert not Users(path).verify("ann", PASSWORD) and Users(path).verify("ann", "a new passphrase")


@pytest.mark.parametrize("name, password, message", [
    ("ann smith", PASSWORD, "not allowed"),
    ("", PASSWORD, "not allowed"),
    ("ann", "short", "too short"),
])
def test_bad_names_and_passwords_are_refused_with_the_fix(tmp_path, name, password, message):
    with pytest.raises(UsersFileError, match=message):
        Users(tmp_path / "users.json").add(name, password)
    assert not (tmp_path / "users.json").exists()


def test_unusable_files_are_explained(tmp_path, monkeypatch):
    monkeypatch.delenv("SKINLENS_USERS", raising=False)
    with pytest.raises(UsersFileError, match="SKINLENS_USERS"):
        Users()
    with pytest.raises(UsersFileError, match="not found"):
        Users(tmp_path / "absent.json", must_exist=True)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UsersFileError, match="cannot be read"):
        Users(bad)
    bad.write_text(json.dumps({"version": 1, "users": {"ann": {"salt": "zz"}}}))
    with pytest.raises(UsersFileError, match="damaged"):
        Users(bad)


def _cli(*args, stdin="", env_file=None):
    env = {k: v for k, v in os.environ.items() if k != "SKINLENS_USERS"}
    env["PYTHONPATH"] = REPO_ROOT
    if env_file:
        env["SKINLENS_USERS"] = str(env_file)
    return subprocess.run([sys.executable, "-m", "skin.users", *args], input=stdin, capture_output=True,
                          text=True, cwd=REPO_ROOT, env=env, timeout=60)


def test_cli_reads_the_password_from_stdin(tmp_path):
    path = tmp_path / "users.json"
    done = _cli("add", "ann", stdin=PASSWORD + "\n", env_file=path)
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr and PASSWORD not in path.read_text()
    assert Users(path).verify("ann", PASSWORD)
    assert _cli("list", env_file=path).stdout.split() == ["ann"]
    short = _cli("add", "bob", stdin="short\n", env_file=path)
    assert short.returncode == 2 and "too short" in short.stderr and "Traceback" not in short.stderr
    gone = _cli("remove", "carol", env_file=path)
    assert gone.returncode == 2 and "no user 'carol'" in gone.stderr
    unset = _cli("list")
    assert unset.returncode == 2 and "SKINLENS_USERS" in unset.stderr and "Traceback" not in unset.stderr
