"""The folders the command-line tools write into, made before any work: a folder that cannot be
made or written is a message naming the option to change, not an ``OSError`` trace at the end."""

from __future__ import annotations

import os


def make_output_dir(path: str | os.PathLike, option: str) -> str:
    """Create ``path`` (and its parents) if needed and return it as a string; ``option`` is the command-line
    flag that named it (``--output_dir``), for the message when it cannot be used."""
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the output folder {path!r} ({e.strerror or e}): "
                         f"pass {option} a folder you can write") from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"the output folder {path!r} is not writable: pass {option} a folder you can write")
    return path
