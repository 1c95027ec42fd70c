"""The command that runs digest again from here, for the hints printed to an operator."""

from __future__ import annotations

import getpass
import os
import shlex
import sys
from pathlib import Path

# The config file and database this process's command read (one command per process); kept
# for the module, not in click's context, because the studio's and the web app's request
# threads print hints too and have no click context.
_files: list[str] = []


def remember_files(config_source: Path | None, db_path: Path) -> None:
    """Note the config file (if any) and database the command line resolved, for hints."""
    _files[:] = ["--config", str(config_source.absolute())] if config_source else []
    _files.extend(["--db", str(db_path.absolute())])


def digest_command() -> str:
    """This process's own `digest` executable, with the config file and database it read.

    A hint such as `... send --retry-failed` must run where it is printed: `digest` may not be
    on PATH (a venv, cron), and a bare command would read another folder's config or
    database (one found in the working folder, or set by DIGEST_DB, included: the hint may be
    run from elsewhere). Outside the command line (tests, gunicorn) it is plain `digest`.
    """
    words = _executable()
    return shlex.join(words + _files) if words else "digest"


def digest_executable() -> str:
    """This process's own `digest` executable alone, for a hint that names its own --db."""
    words = _executable()
    return shlex.join(words) if words else "digest"


def _executable() -> list[str]:
    program = Path(sys.argv[0])
    if program.name == "digest" and program.is_file():
        return [str(program.absolute())]
    if program.name == "__main__.py" and program.parent.name == "digest":
        return [sys.executable, "-m", "digest"]
    return []


def os_user() -> str:
    """Who runs this process, as the operating system names them: the audit trail's "who"."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # No login name and no passwd entry (a bare container): the numeric id still says who.
        return f"uid {os.getuid()}"
