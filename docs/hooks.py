"""MkDocs hooks: the configuration reference, generated from digest's own definitions."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from typing import Any

from digest import config

MARKER = "<!-- config-reference -->"


def key_meanings(cls: type) -> dict[str, str]:
    """Each field of a config dataclass and the docstring written under it."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    meanings = {}
    for node, following in zip(body, [*body[1:], None], strict=True):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            doc = following.value.value if _is_docstring(following) else ""  # type: ignore[union-attr]
            meanings[node.target.id] = " ".join(doc.split())
    return meanings


def _is_docstring(node: ast.stmt | None) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return "`[]`" if not value else f"`{list(value)}`"
    if value is None or value == "":
        return "(none)"
    if dataclasses.is_dataclass(value):
        return "(a table)"
    return f"`{value}`"


def section_rows(definition: type | dict[str, config.PathKey]) -> list[tuple[str, str, str]]:
    """(key, default, meaning) for every key of one table of digest.toml."""
    if isinstance(definition, dict):
        return [(key, _shown(k.default), k.meaning) for key, k in definition.items()]
    meanings = key_meanings(definition)
    rows = []
    for field in dataclasses.fields(definition):
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            continue  # filled in by the loader (a newsletter's name is its table's)
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        rows.append((field.name, _shown(default), meanings.get(field.name, "")))
    return rows


def config_reference() -> str:
    """The reference of every table and key of digest.toml, as Markdown."""
    parts = []
    for section, definition in config.SECTIONS.items():
        parts.append(f"## `[{section}]`\n\n| key | default | meaning |\n| --- | --- | --- |")
        for key, default, meaning in section_rows(definition):
            cell = meaning.replace("|", "\\|")
            parts.append(f"| `{key}` | {default} | {cell} |")
        parts.append("")
    return "\n".join(parts)


def on_page_markdown(markdown: str, **_: Any) -> str:
    return markdown.replace(MARKER, config_reference()) if MARKER in markdown else markdown
