"""The command that runs digest again from here, for the hints printed to an operator."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click


def digest_command() -> str:
    """This process's own `digest` executable, with the `--config`/`--db` it was given.

    A hint such as `... send --retry-failed` must run where it is printed: `digest` may not be
    on PATH (a venv, cron), and a bare command would read another folder's config.
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
    params = context.find_root().params if context else {}
    for option, key in (("--config", "config_path"), ("--db", "db_path")):
        if params.get(key):
            words += [option, str(Path(params[key]).absolute())]
    return shlex.join(words)
