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
DOCS = REPO / "docs"
LAYOUT = (DOCS / "how-it-works" / "layout.md").read_text(encoding="utf-8")
# The guides a person reads, not the reference generated from the code.
GUIDES = "\n".join(
    path.read_text(encoding="utf-8")
    for path in sorted(DOCS.rglob("*.md"))
    if "reference" not in path.parts
)


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[str]:
    paths = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths += command_paths(command, (*prefix, name))
        else:
            paths.append(" ".join(("digest", *prefix, name)))
    return paths


@pytest.mark.parametrize("command", command_paths(cli))
def test_every_command_is_documented_in_a_guide(command):
    assert f"`{command}" in GUIDES, f"no page under docs/ documents `{command}`"


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


def _layout_table() -> list[str]:
    rows = [line for line in LAYOUT.splitlines() if line.startswith("| `")]
    return [name for row in rows for name in re.findall(r"`([^`]+)`", row.split("|")[1])]


def test_the_layout_table_names_every_top_level_file_and_folder_in_git():
    import subprocess

    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=False
    )
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    top = {path.split("/")[0] + ("/" if "/" in path else "") for path in tracked.stdout.split()}
    top -= {"README.md", ".gitignore"}
    listed = set()
    for name in _layout_table():
        first = name.strip("/").split("/")[0]
        listed.add(first + "/" if (REPO / first).is_dir() else first)
    assert sorted(top - listed) == []
    assert sorted(name for name in _layout_table() if not (REPO / name).exists()) == []


def test_the_layout_page_names_every_module():
    package = REPO / "digest"
    modules = {
        path.stem
        for path in package.rglob("*.py")
        if path.stem not in ("__init__", "__main__") and "shipped" not in path.parts
    }
    assert sorted(name for name in modules if f"`{name}`" not in LAYOUT) == []


# The one module that writes each table (store.py's migrations aside). Reading across tables
# is free (a report, a webhook event finding its delivery); writing goes through the home.
TABLE_HOMES = {
    "stories": {"newsroom/stories.py"},
    # readers/subscriptions rolls the address status up from the subscriptions (it cannot
    # import readers/subscribers, which imports it); readers/privacy erases a reader whole.
    "subscribers": {"readers/subscribers.py", "readers/subscriptions.py", "readers/privacy.py"},
    "subscriptions": {"readers/subscriptions.py"},
    "audit": {"readers/audit.py"},
    "suppressions": {"readers/suppression.py"},
    "suppression_salt": {"readers/suppression.py"},
    "signup_attempts": {"readers/signup.py"},
    "signup_requests": {"readers/signup.py"},
    "editions": {"edition/build.py"},
    "deliveries": {"delivery/ledger.py"},
    "leases": {"delivery/lease.py"},
    "runs": {"delivery/slots.py"},
    "slots": {"delivery/slots.py"},
    "webhook_posts": {"feedback/events.py"},
    "events": {"feedback/events.py"},
    "delivery_states": {"feedback/events.py"},
    "engagement": {"feedback/events.py"},
    "reader_engagement": {"feedback/events.py"},
    "list_health": {"feedback/list_health.py"},
    "holds": {"delivery/holds.py"},
    "edition_edits": {"edition/edits.py"},
    "story_clicks": {"feedback/events.py"},
    "story_click_hours": {"feedback/events.py"},
    "clicks_set_aside": {"feedback/events.py"},
    "position_click_hours": {"feedback/events.py"},
    "reach_hours": {"feedback/events.py"},
    "edition_lineups": {"edition/build.py"},
    "edition_sends": {"delivery/ledger.py"},
    "archive_days": {"archive/days.py"},
    "report_mails": {"feedback/mailing.py"},
}
# Temporary tables of one connection (no migration makes them): the histories of the slot
# being planned.
TEMPORARY_TABLE_HOMES = {"reader_history": {"delivery/ledger.py"}}
# SQL that writes a table, in any case and over line breaks, its name quoted or qualified or
# not (not an upsert's `DO UPDATE SET`: its table is the INSERT's); and sqlite-utils' writes.
WRITE = re.compile(
    r"\b(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|(?<!DO\s)UPDATE|DELETE\s+FROM)"
    r"\s+[\"`\[]?(?:\w+\.)?(\w+)",
    re.IGNORECASE,
)
TABLE_API_WRITE = re.compile(
    r"""(?:\[|\.table\()\s*["'](\w+)["']\s*[\])]\s*\.\s*"""
    r"(?:insert|upsert|update|delete|delete_where|insert_all|upsert_all|transform|drop)\b"
)


def sql_strings(tree: ast.Module) -> list[str]:
    """Every string in a module's code (f-strings' pieces too), but its docstrings' prose."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def table_writers() -> dict[str, set[str]]:
    """Each table written outside the migrations (store.py), with the modules that write it."""
    package = REPO / "digest"
    writers: dict[str, set[str]] = {}
    for module in package.rglob("*.py"):
        name = module.relative_to(package).as_posix()
        if name != "store.py":
            text = module.read_text(encoding="utf-8")
            tables = TABLE_API_WRITE.findall(text)
            for string in sql_strings(ast.parse(text)):
                tables += WRITE.findall(string)
            for table in tables:
                writers.setdefault(table.lower(), set()).add(name)
    return writers


def test_every_table_is_written_only_by_its_own_module():
    writers = table_writers()
    homes = TABLE_HOMES | TEMPORARY_TABLE_HOMES
    assert {table: names - homes.get(table, set()) for table, names in writers.items()} == {
        table: set() for table in writers
    }
    # The scan sees each home at work (the salt is written by its migration alone).
    assert set(writers) == set(homes) - {"suppression_salt"}


def test_the_table_scan_sees_writes_in_every_form_sql_and_sqlite_utils_take():
    forms = [
        "insert into subscribers (email) values (?)",
        'INSERT OR REPLACE\n    INTO "subscribers" VALUES (?)',
        "UPDATE main.subscribers SET name = ?",
        "delete from [subscribers] where id = ?",
        'db["subscribers"].insert({})',
        "db.table('subscribers').upsert({}, pk='id')",
    ]
    assert [WRITE.findall(f) + TABLE_API_WRITE.findall(f) for f in forms] == [["subscribers"]] * 6
    upsert = "INSERT INTO runs (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET id = 1"
    assert WRITE.findall(upsert) == ["runs"]


def test_every_table_the_migrations_create_has_a_home():
    created = re.findall(r"CREATE TABLE (\w+)", (REPO / "digest" / "store.py").read_text())
    # A rebuild (m004, m007) makes `<table>_new`, then renames it to the table.
    assert {name.removesuffix("_new") for name in created} == set(TABLE_HOMES)


def _hooks():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_config_key_has_a_meaning_for_the_generated_reference():
    from digest.config import SECTIONS

    hooks = _hooks()
    undocumented = [
        f"{section}.{key}"
        for section, definition in SECTIONS.items()
        for key, _default, meaning in hooks.section_rows(definition)
        if not meaning
    ]
    assert undocumented == [], "write a docstring under each of these fields in digest/config.py"


def test_the_config_reference_names_every_key_the_config_accepts():
    import dataclasses

    from digest.config import SECTIONS

    reference = _hooks().config_reference()
    for section, definition in SECTIONS.items():
        keys = definition if isinstance(definition, dict) else dataclasses.fields(definition)
        for key in keys:
            name = key if isinstance(key, str) else key.name
            if name != "name":
                assert f"| `{name}` |" in reference.split(f"## `[{section}]`", 1)[1]
    assert "<!-- config-reference -->" in (DOCS / "reference" / "config.md").read_text()


# A command as the docs show it: `digest [--config F] [--db F] sub [sub] [--option ...]`.
DOC_COMMAND = re.compile(r"(?:^|[\s`/])digest((?: [^\s`|]+)+)")


def _documented_invocations() -> list[str]:
    found = []
    for path in [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]:
        if "reference" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        spans = re.findall(r"`(digest [^`]+)`", text)
        blocks = re.findall(r"```(?:sh|bash|console)?\n(.*?)```", text, re.S)
        # A line of a block that runs digest (by any path), not digest named in prose or output.
        lines = [
            line.split("#")[0].strip()
            for block in blocks
            for line in block.splitlines()
            if re.match(r"\s*(?:\S*/)?digest ", line)
        ]
        for chunk in [*spans, *lines]:
            found += ["digest" + m.group(1) for m in DOC_COMMAND.finditer(chunk)]
    # Not digest run with options: the synopsis (`digest [--config FILE] ...`) and the user
    # or folder named digest in another program's line (`useradd ... digest`).
    ours = {opt for p in cli.params for opt in getattr(p, "opts", [])}
    return sorted(
        {line for line in found if line.split()[1] in ours or line.split()[1][0] not in "[-"}
    )


@pytest.mark.parametrize("invocation", _documented_invocations())
def test_every_command_the_docs_show_exists_with_the_options_they_give_it(invocation):
    words = invocation.split()[1:]
    target: click.Command = cli
    options = {opt for p in cli.params for opt in getattr(p, "opts", [])}
    for word in words:
        if word.startswith("--"):
            name = word.split("=")[0]
            assert name in options | {"--help"}, f"`{invocation}`: {name} is not an option"
        elif isinstance(target, click.Group) and word in target.commands:
            target = target.commands[word]
            options |= {opt for p in target.params for opt in getattr(p, "opts", [])}
        elif target is cli and re.fullmatch(r"[a-z]+", word):
            pytest.fail(f"`{invocation}`: digest has no command {word!r}")
    assert target is not cli or not words or words[0].startswith("-") or words == ["--help"]


@pytest.mark.parametrize(
    "module",
    sorted(
        path
        for path in (REPO / "digest").rglob("*.py")
        if path.stem not in ("__init__", "__main__") and "shipped" not in path.parts
    ),
    ids=lambda p: str(p.relative_to(REPO / "digest")),
)
def test_every_module_is_named_by_its_family(module):
    family = module.parent
    while not (family / "__init__.py").exists() or family.name == "transports":
        family = family.parent
    docstring = ast.get_docstring(ast.parse((family / "__init__.py").read_text("utf-8")))
    assert f"`{module.stem}`" in (docstring or ""), (
        f"{family.name}/__init__.py does not name `{module.stem}`: say what it does there"
    )
