"""Meta-tests that stop drift: every command documented, every template twinned and rendering."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest

from digest.cli import cli
from digest.config import PROJECT_TEMPLATES

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[str]:
    paths = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths += command_paths(command, (*prefix, name))
        else:
            paths.append(" ".join(("digest", *prefix, name)))
    return paths


@pytest.mark.parametrize("command", command_paths(cli))
def test_every_command_is_documented_in_the_readme(command):
    assert f"`{command}" in README, f"README.md does not document `{command}`"


@pytest.mark.parametrize("command", command_paths(cli))
def test_every_command_has_help_text(command):
    names = command.split()[1:]
    target: click.Command = cli
    for name in names:
        target = target.commands[name]
    assert target.help and len(target.help.strip()) > 10


def email_templates() -> list[Path]:
    return sorted(PROJECT_TEMPLATES.glob("*.html"))


@pytest.mark.parametrize("html", email_templates(), ids=lambda p: p.name)
def test_every_html_template_has_a_text_twin(html):
    assert html.with_suffix(".txt").exists(), f"{html.name} has no {html.stem}.txt twin"


@pytest.mark.parametrize(
    "module",
    sorted((REPO / "digest").rglob("*.py")),
    ids=lambda p: str(p.relative_to(REPO / "digest")),
)
def test_every_module_opens_with_a_one_sentence_docstring(module):
    docstring = ast.get_docstring(ast.parse(module.read_text(encoding="utf-8")))
    assert docstring, f"{module.name} has no docstring"
    first = docstring.strip().split("\n\n")[0]
    assert re.search(r"[.:]$", first.strip()), f"{module.name}: {first!r}"


def test_the_readme_shows_the_two_setup_commands():
    assert "make demo" in README and "make test" in README
