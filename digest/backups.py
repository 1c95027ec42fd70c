"""Copies of the database: `digest backup` and `digest restore`, and the daily backup cron makes.

A backup is taken with SQLite's online backup API, so it is one consistent moment of the
ledger even while `digest serve` and `digest run` write (WAL readers never block writers),
then checked with `PRAGMA integrity_check` before it takes its final name. A restore copies a
checked backup into the database through the same API, under SQLite's own locks, and only
when the backup's schema is one this version of digest knows; it refuses to replace a
database that exists unless told to (`force`), and then keeps the replaced one beside it.
"""

from __future__ import annotations

import os
import re
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from sqlite_utils import Database

from .clock import utcnow
from .errors import StoreError
from .store import known_schema, migrations, open_db

# The daily backups in `[backup] dir`: one per UTC day, named for it.
DAILY_NAME = "digest-{:%Y-%m-%d}.db"
DAILY_PATTERN = re.compile(r"digest-(\d{4}-\d{2}-\d{2})\.db")


def backup(db_path: Path, target: Path) -> int:
    """Copy the database at `db_path` to `target` (a new file), checked; returns its bytes."""
    if target.exists():
        raise StoreError(f"{target} exists already; give a new file name or remove it first.")
    if not db_path.is_file():
        raise StoreError(f"There is no database at {db_path} to back up (--db or DIGEST_DB).")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        _copy(db_path, partial, checked_as=target)
        os.replace(partial, target)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"The backup to {target} failed: {exc}. Nothing was replaced.") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target.stat().st_size


def restore(source: Path, db_path: Path, *, force: bool = False) -> Path | None:
    """Copy the backup `source` into the database at `db_path`, then bring its schema up to date.

    Returns where the replaced database was kept (None when there was none).
    """
    _check_backup(source)
    kept = None
    if db_path.exists():
        if not force:
            raise StoreError(
                f"{db_path} exists and may be in use: restoring would replace every reader and "
                "the ledger. Stop `digest serve` and cron first, then add --force (the current "
                "database is kept beside it)."
            )
        kept = db_path.with_name(f"{db_path.name}.before-restore-{utcnow():%Y%m%dT%H%M%SZ}")
        backup(db_path, kept)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _copy(source, db_path)
    except sqlite3.Error as exc:
        raise StoreError(f"Restoring {source} into {db_path} failed: {exc}.") from None
    open_db(db_path).close()
    return kept


def _copy(source: Path, target: Path, checked_as: Path | None = None) -> None:
    """SQLite's online backup of `source` into `target`, under both files' locks; with
    `checked_as`, the copy is made one self-contained file and checked whole."""
    origin = sqlite3.connect(source)
    copy = sqlite3.connect(target)
    try:
        for connection in (origin, copy):
            connection.execute("PRAGMA busy_timeout = 30000")
        origin.backup(copy)
        if checked_as is not None:
            copy.execute("PRAGMA journal_mode = DELETE")
            _check_integrity(copy, checked_as)
    finally:
        copy.close()
        origin.close()


def _check_backup(source: Path) -> None:
    """A readable SQLite file, whole, of a schema this version of digest can open."""
    if not source.is_file():
        raise StoreError(f"There is no backup file {source}.")
    try:
        with sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True) as copy:
            _check_integrity(copy, source)
        db = Database(sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True))
        try:
            applied = [m.name for m in migrations.applied(db)]
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{source} is not a digest database ({exc}).") from None
    known = known_schema()
    if not applied:
        raise StoreError(f"{source} is not a digest database (it has no schema version).")
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise StoreError(
            f"{source} was made by a newer digest (schema {unknown[-1]}); restore it with that "
            "version, or upgrade this one."
        )


def _check_integrity(connection: sqlite3.Connection, path: Path) -> None:
    result = [row[0] for row in connection.execute("PRAGMA integrity_check")]
    if result != ["ok"]:
        raise StoreError(f"{path} failed SQLite's integrity check: {'; '.join(result[:3])}")


def daily_backup(db_path: Path, folder: Path, keep_days: int, now: datetime) -> list[str]:
    """Today's backup in `folder` unless it is there already, and backups past `keep_days`
    removed; returns what it did, one line each."""
    done = []
    today = folder / DAILY_NAME.format(now)
    if not today.exists():
        size = backup(db_path, today)
        done.append(f"backup: {today} ({size} bytes)")
    oldest = (now - timedelta(days=keep_days)).strftime("%Y-%m-%d")
    for path in sorted(folder.glob("digest-*.db")):
        match = DAILY_PATTERN.fullmatch(path.name)
        if match and match.group(1) < oldest:
            path.unlink()
            done.append(f"backup: removed {path.name} (older than {keep_days} days)")
    return done
