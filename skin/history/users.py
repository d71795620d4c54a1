"""The self-hosted users file: names and salted scrypt hashes, never passwords.

``SKINLENS_USERS=PATH`` names the file; ``python -m skin.users add NAME``
(:mod:`skin.users`) adds or replaces a user. The file is JSON::

    {"version": 1, "users": {"ann": {"salt": "<hex>", "hash": "<hex>", "n": 16384, "r": 8, "p": 1}}}

Each hash is ``hashlib.scrypt`` (memory-hard: 128·r·n bytes = 16 MiB per
guess at the parameters below, RFC 7914's interactive-login setting) over the
password with a random 16-byte salt; the parameters are stored beside it, so
raising them later leaves old entries verifiable. Passwords are compared with
``hmac.compare_digest`` (constant time). The file is written atomically and
readable by its owner only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

USERS_ENV = "SKINLENS_USERS"
FILE_VERSION = 1
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
#: Sign-in names: letters, digits and ``._@-``, as they appear in the history and in logs.
NAME_PATTERN = re.compile(r"[A-Za-z0-9._@-]{1,64}")
#: Shortest password accepted (NIST SP 800-63B's minimum for a user-chosen secret).
MIN_PASSWORD_LENGTH = 8


class UsersFileError(ValueError):
    """The users file, a name or a password is unusable; the message names the problem and the fix."""


@dataclass(frozen=True)
class PasswordHash:
    """One user's stored credential."""

    salt: bytes
    hash: bytes
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P

    @classmethod
    def create(cls, password: str) -> PasswordHash:
        salt = secrets.token_bytes(SALT_BYTES)
        return cls(salt, _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))

    def matches(self, password: str) -> bool:
        return hmac.compare_digest(self.hash, _scrypt(password, self.salt, self.n, self.r, self.p))

    def to_dict(self) -> dict:
        return {"salt": self.salt.hex(), "hash": self.hash.hex(), "n": self.n, "r": self.r, "p": self.p}

    @classmethod
    def from_dict(cls, d: dict) -> PasswordHash:
        return cls(bytes.fromhex(d["salt"]), bytes.fromhex(d["hash"]), int(d["n"]), int(d["r"]), int(d["p"]))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * r * n,
                          dklen=HASH_BYTES)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise UsersFileError(f"user name {name!r} is not allowed: use 1-64 letters, digits or . _ @ -")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsersFileError(f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters")
    return password


def users_path(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$SKINLENS_USERS``; an error naming the variable when neither is given."""
    value = path or os.environ.get(USERS_ENV, "").strip()
    if not value:
        raise UsersFileError(f"no users file: set {USERS_ENV}=PATH (e.g. {USERS_ENV}=data/users.json)")
    return Path(value)


class Users:
    """The users of one file (read once; :meth:`add` and :meth:`remove` write it back)."""

    def __init__(self, path: str | os.PathLike | None = None, *, must_exist: bool = False):
        self.path = users_path(path)
        self._users: dict[str, PasswordHash] = {}
        if self.path.is_file():
            self._users = _read(self.path)
        elif must_exist:
            raise UsersFileError(f"users file {self.path} not found: create it with "
                                 "`python -m skin.users add NAME` (password on standard input)")

    @property
    def names(self) -> list[str]:
        return sorted(self._users)

    def add(self, name: str, password: str) -> None:
        """Add ``name`` or replace its password, and write the file."""
        self._users[check_name(name)] = PasswordHash.create(check_password(password))
        self._write()

    def remove(self, name: str) -> bool:
        """Remove ``name`` (``False`` when absent) and write the file."""
        found = self._users.pop(name, None) is not None
        if found:
            self._write()
        return found

    def verify(self, name: str, password: str) -> bool:
        """Whether ``password`` is ``name``'s (the same scrypt work for an unknown name, so that its
        timing does not say which names exist)."""
        stored = self._users.get(name) if isinstance(name, str) else None
        if stored is None or not isinstance(password, str):
            PasswordHash(bytes(SALT_BYTES), bytes(HASH_BYTES)).matches(str(password))
            return False
        return stored.matches(password)

    def _write(self) -> None:
        doc = {"version": FILE_VERSION, "users": {n: h.to_dict() for n, h in sorted(self._users.items())}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(doc, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _read(path: Path) -> dict[str, PasswordHash]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsersFileError(f"users file {path} cannot be read ({e}); fix it or start a new one with "
                             "`python -m skin.users add NAME`") from e
    if not isinstance(doc, dict) or doc.get("version") != FILE_VERSION or not isinstance(doc.get("users"), dict):
        raise UsersFileError(f"users file {path} is not a SkinLens users file (version {FILE_VERSION}); "
                             "start a new one with `python -m skin.users add NAME`")
    try:
        return {str(n): PasswordHash.from_dict(h) for n, h in doc["users"].items()}
    except (KeyError, TypeError, ValueError) as e:
        raise UsersFileError(f"users file {path}: a user's entry is damaged ({type(e).__name__}: {e}); "
                             "add that user again with `python -m skin.users add NAME`") from e
