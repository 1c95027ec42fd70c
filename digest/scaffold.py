"""The shipped newsroom files (config, templates, example list, cron) and `digest init`."""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path

from .config import ENV_FILE, SHIPPED
from .errors import ConfigError

# What `digest init` copies, relative to SHIPPED (and what setup.py puts in the wheel).
NEWSROOM_FILES = ("digest.toml", "templates", "subscribers/example.csv", "cron")
# The folder the shipped cron files name; `digest init` puts the newsroom's own path there.
SHIPPED_HOME = "/srv/digest"
# What a folder's path may hold for crontab (through /bin/sh) and systemd units to run it as
# written: letters, digits and `_ @ + = : , . / -` (shlex's unquoted set, less `%`, which both
# expand). Quoting for three syntaxes at once is easy to get subtly wrong; a server's folder
# can always be named plainly.
PLAIN_PATH = re.compile(r"[\w@+=:,./-]+")


def init_newsroom(folder: Path) -> list[Path]:
    """Fill `folder` with a newsroom's files and a `.env` holding a fresh secret key.

    Refuses, before writing anything, if any of them is already there, or if the folder's
    path holds a character cron or systemd would need quoted. The cron files name the
    folder's real path; `.env` is readable by its owner only. Returns what was written.
    """
    folder = folder.resolve()
    if not PLAIN_PATH.fullmatch(str(folder)):
        raise ConfigError(
            f"Not scaffolding in {str(folder)!r}: cron/crontab and the systemd units name the "
            "folder, and cron and systemd cannot run a path with a space (or any of "
            "' \" \\ $ % ; & ( ) and the like) as written. Pick a folder whose path has only "
            "letters, digits and _ @ + = : , . / - (e.g. /srv/digest)."
        )
    targets = [folder / name for name in (*NEWSROOM_FILES, ENV_FILE)]
    present = [str(path) for path in targets if path.exists() or path.is_symlink()]
    if present:
        raise ConfigError(
            f"Not overwriting {', '.join(present)}; pick an empty folder, or move those away first."
        )
    folder.mkdir(parents=True, exist_ok=True)
    for name in NEWSROOM_FILES:
        source, target = SHIPPED / name, folder / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for unit in (folder / "cron").iterdir():
        text = unit.read_text(encoding="utf-8")
        # The path goes where the files run it, never into a comment (they read right as is).
        lines = [
            line if line.startswith("#") else line.replace(SHIPPED_HOME, str(folder))
            for line in text.splitlines(keepends=True)
        ]
        unit.write_text("".join(lines), encoding="utf-8")
        if text.startswith("#!"):
            unit.chmod(0o755)  # the scripts, whatever modes the copy kept
    env = folder / ENV_FILE
    env.touch(mode=0o600)
    env.write_text(
        "# Settings for every digest command here (the CLI, the web app, cron): KEY=value lines,\n"
        "# read by digest itself; the environment wins. Keep this file private.\n"
        f"DIGEST_SECRET_KEY={secrets.token_urlsafe(48)}\n"
        "# SENDGRID_API_KEY=SG....\n",
        encoding="utf-8",
    )
    return targets
