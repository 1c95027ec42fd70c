"""The command that runs digest again from here, for the hints printed to an operator."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

# Where the command line notes the config file it loaded (in click's `Context.meta`).
CONFIG_SOURCE = "digest.config_source"


def digest_command() -> str:
    """This process's own `digest` executable, with the config file it read and its `--db`.

    A hint such as `... send --retry-failed` must run where it is printed: `digest` may not be
    on PATH (a venv, cron), and a bare command would read another folder's config (the
    config found as ./digest.toml included: the hint may be run from elsewhere).
    Outside the command line (tests, the web app) it is plain `digest`.
    """
    program = Path(sys.argv[0])
    if program.name == "digest" and program.is_file():
        words = [str(program.absolute())]
    elif program.name == "__main__.py" and program.parent.name == "digest":
        words = [sys.executable, "-m", "digest"]
    else:
        return "digest"
    context = click.get_current_context(silent=True)
    if context is None:
        return shlex.join(words)
    config = context.meta.get(CONFIG_SOURCE) or context.find_root().params.get("config_path")
    if config:
        words += ["--config", str(Path(config).absolute())]
    if db := context.find_root().params.get("db_path"):
        words += ["--db", str(Path(db).absolute())]
    return shlex.join(words)
