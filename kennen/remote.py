"""``make pull``: check the default DVC remote before ``dvc pull``, so that a fresh clone says what to configure.

A fresh clone's default remote is ``localstore``, a folder beside the checkout
(``.dvc/config``: ``../../kennen-dvc-store``). On a machine that never pushed there, a
plain ``dvc pull`` prints "Everything is up to date." and then fails on every missing
hash without naming the remote. ``python -m kennen.remote`` checks first: a default
remote that is a local folder must exist, and a repo without any remote is told how to
add one. Remote URLs of other kinds (``s3://``, ...) are left to ``dvc pull``, which
reports their errors itself. Exit 0: go ahead; exit 2: one line ``error: ...`` saying
which remote to configure and how.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kennen.errors import KennenError

HOW = (
    "point it at the store you share (`dvc remote modify --local {name} url /path/or/s3://bucket/kennen`) "
    "or add your own (`dvc remote add -d --local mystore s3://bucket/kennen`), then `make pull`; "
    "without a store, `make repro` builds everything here"
)


def check_default_remote(root: Path) -> str:
    """The default remote's name after checking it can be pulled from; a KennenError saying what to do if not."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        config = repo.config
    name = config["core"].get("remote")
    if not name:
        raise KennenError(f"{root}: no default DVC remote; " + HOW.format(name="NAME"))
    if name not in config["remote"]:
        raise KennenError(f"core.remote: names the remote {name!r}, which .dvc/config does not define; "
                          + HOW.format(name=name))  # fmt: skip
    url = str(config["remote"][name]["url"])
    if "://" not in url and not Path(url).is_dir():
        raise KennenError(f"DVC remote {name!r} is the folder {url}, which does not exist on this machine; "
                          + HOW.format(name=name))  # fmt: skip
    return name


def main(argv: list[str] | None = None) -> int:
    root = Path(argv[0]) if argv else Path.cwd()
    try:
        name = check_default_remote(root)
    except KennenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"pulling from the DVC remote {name!r}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
