"""The shipped newsroom files (config, templates, example list, cron) and `digest init`."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

from .config import ENV_FILE, SHIPPED
from .errors import ConfigError

# What `digest init` copies, relative to SHIPPED (and what setup.py puts in the wheel).
NEWSROOM_FILES = ("digest.toml", "templates", "subscribers/example.csv", "cron")
# The folder the shipped cron files name; `digest init` puts the newsroom's own path there.
SHIPPED_HOME = "/srv/digest"


def init_newsroom(folder: Path) -> list[Path]:
    """Fill `folder` with a newsroom's files and a `.env` holding a fresh secret key.

    Refuses, before writing anything, if any of them is already there. The cron files name
    the folder's real path; `.env` is readable by its owner only. Returns what was written.
    """
    folder = folder.resolve()
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
        if SHIPPED_HOME in text:
            unit.write_text(text.replace(SHIPPED_HOME, str(folder)), encoding="utf-8")
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
