"""Manage the sign-in users of a self-hosted SkinLens (the file named by ``SKINLENS_USERS``).

    echo 'a long passphrase' | SKINLENS_USERS=data/users.json python -m skin.users add ann
    SKINLENS_USERS=data/users.json python -m skin.users list
    SKINLENS_USERS=data/users.json python -m skin.users remove ann

``add`` reads the password from the first line of standard input (typed at a
prompt, without echo, when standard input is a terminal), so it never appears
in the shell history or the process list. See :mod:`skin.history.users`.
"""

from __future__ import annotations

import argparse
import sys

from skin.history.users import Users, UsersFileError


def _read_password() -> str:
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\r\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skin.users", description=__doc__.split("\n")[0])
    parser.add_argument("--file", default=None, help="the users file (default: $SKINLENS_USERS)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("add", help="add a user or replace a password (read from standard input)").add_argument("name")
    sub.add_parser("remove", help="remove a user").add_argument("name")
    sub.add_parser("list", help="the user names")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            print("\n".join(Users(args.file, must_exist=True).names))
        elif args.command == "remove":
            if not Users(args.file, must_exist=True).remove(args.name):
                raise UsersFileError(f"no user {args.name!r} in the users file; `list` shows who is there")
            print(f"removed {args.name}")
        else:
            users = Users(args.file)
            users.add(args.name, _read_password())
            print(f"saved {args.name} in {users.path}")
    except UsersFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
