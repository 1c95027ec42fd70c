"""`digest archive build DIR`: the archive's pages and feeds as files any static host serves.

The same paths as under `digest serve` (a folder's page is its `index.html`), the same bytes.
Only files whose content changed are rewritten (each atomically), so a web server's validators
and a sync to a bucket see only what is new; files of days since hidden are removed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlite_utils import Database

from ..config import Config
from ..errors import ConfigError
from ..urls import ARCHIVE_PATH
from .pages import Archive, ArchivePageError


@dataclass
class StaticBuild:
    """What a build did, file by file (paths relative to its folder)."""

    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"archive: {len(self.written)} file(s) written, {self.unchanged} unchanged, "
            f"{len(self.removed)} removed"
        )


def file_for(path: str) -> str:
    """The file a URL path is kept in: a folder's page is its `index.html`."""
    relative = path.lstrip("/")
    return relative + "index.html" if path.endswith("/") else relative


def _write_if_changed(target: Path, content: bytes) -> bool:
    try:
        if target.read_bytes() == content:
            return False
    except FileNotFoundError:
        pass
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(content)
    os.replace(partial, target)
    return True


def build_static(
    db: Database,
    config: Config,
    folder: Path,
    newsletter: str | None = None,
    now: datetime | None = None,
) -> StaticBuild:
    """Write the archive (every newsletter's, or one's and the shared index and sitemap)."""
    archive = Archive(db, config, now)
    names = [n.name for n in archive.newsletters()]
    if newsletter is not None:
        if newsletter not in names:
            raise ConfigError(
                f"No newsletter named {newsletter!r} has a public archive (public: "
                f"{', '.join(names) or 'none'}); pick one, or set archive = true for it."
            )
        names = [newsletter]
    shared = {f"{ARCHIVE_PATH}/", f"{ARCHIVE_PATH}/sitemap.xml"}
    paths = [
        p
        for p in archive.every_path()
        if p in shared or any(p.startswith(f"{ARCHIVE_PATH}/{name}/") for name in names)
    ]
    build = StaticBuild()
    kept = set()
    for path in paths:
        try:
            page = archive.page_at(path)
        except ArchivePageError:
            # Listed a moment ago, withdrawn since: it is not written.
            continue
        relative = file_for(path)
        kept.add(relative)
        if _write_if_changed(folder / relative, page.body.encode("utf-8")):
            build.written.append(relative)
        else:
            build.unchanged += 1
    for name in names:
        own = folder / ARCHIVE_PATH.lstrip("/") / name
        if not own.is_dir():
            continue
        for found in sorted(own.rglob("*"), reverse=True):
            relative = found.relative_to(folder).as_posix()
            if found.is_file() and relative not in kept:
                found.unlink()
                build.removed.append(relative)
            elif found.is_dir() and not any(found.iterdir()):
                found.rmdir()
    return build
