"""The command line: each command end to end on a real database, and errors as one clear line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.config import PROJECT_TEMPLATES
from digest.store import open_db

from helpers import write_config

REPO = Path(__file__).resolve().parent.parent
NOW = "2026-11-26T07:05:00Z"


STORIES = """url,title,summary,author,category,published_at,score,pinned
https://news.test/a,Tram runs all night,Trams all night.,Mira,world,2026-11-26T05:00:00Z,3,false
https://news.test/b,Otters return,Otters seen.,Priya,science,2026-11-26T04:00:00Z,1,false
"""


@pytest.fixture
def workdir(project_dir):
    """A project folder with a config, a story file and a subscriber list."""
    write_config(project_dir)
    (project_dir / "stories.csv").write_text(STORIES)
    (project_dir / "readers.csv").write_text(
        "email,name,topics,timezone\nana@example.com,Ana,,UTC\nbad-address,X,,UTC\n"
    )
    return project_dir


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_ingest_import_send_then_send_again(workdir):
    assert "2 added" in run("ingest", "stories.csv").output
    imported = run("subscribers", "import", "readers.csv")
    assert "readers.csv:3: invalid address 'bad-address'" in imported.output
    assert "imported: 1 added" in imported.output
    sent = run("send", "--now", NOW)
    assert sent.exit_code == 0, sent.output
    assert "sent 1, failed 0, skipped 0, unknown 0" in sent.output
    assert len(list((workdir / "outbox").rglob("*.eml"))) == 1
    again = run("send", "--now", NOW)
    assert again.exit_code == 0, again.output
    assert (
        again.output.splitlines()[-1]
        == "daily at 2026-11-26 07:00 UTC: already sent: nothing to do"
    )
    assert len(list((workdir / "outbox").rglob("*.eml"))) == 1


def test_what_a_command_creates_is_private_to_its_user_and_the_umask_comes_back(workdir):
    before = os.umask(0o022)
    try:
        run("ingest", "stories.csv")
        run("subscribers", "import", "readers.csv")
        run("send", "--now", NOW)
        run("subscribers", "export", "readers-out.csv")
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)
    created = [workdir / "digest.db", workdir / "outbox", *(workdir / "outbox").rglob("*")]
    created.append(workdir / "readers-out.csv")
    assert {path.name: oct(path.stat().st_mode & 0o077) for path in created} == {
        path.name: "0o0" for path in created
    }


def test_a_dry_run_after_the_send_reports_this_run_not_the_editions_totals(workdir):
    run("ingest", "stories.csv")
    run("subscribers", "import", "readers.csv")
    run("send", "--now", NOW)
    run("subscribers", "add", "late@example.com")
    dry = run("send", "--now", NOW, "--dry-run")
    assert dry.output == (
        "daily-20261126T0700Z-all: already sent: nothing to do\n"
        "dry run: daily at 2026-11-26 07:00 UTC would go to 0 readers in 0 edition(s); "
        "nothing sent\n"
    )


def test_a_dry_run_counts_only_what_this_run_would_send(workdir):
    run("ingest", "stories.csv")
    run("subscribers", "add", "ana@example.com", "--topics", "science")
    run("subscribers", "add", "bo@example.com", "--topics", "culture")
    dry = run("send", "--now", NOW, "--dry-run")
    assert "daily-20261126T0700Z-culture: skipped: no new stories" in dry.output
    assert "would go to 1 readers in 1 edition(s)" in dry.output


def test_a_failing_source_makes_ingest_exit_non_zero_but_keeps_the_others(workdir):
    result = CliRunner().invoke(cli, ["ingest", "missing.xml", "stories.csv"])
    assert result.exit_code == 1
    assert "missing.xml" in result.output
    assert "stories.csv: 2 added" in result.output


def test_preview_writes_html_and_text_for_a_reader_and_records_nothing(workdir):
    run("ingest", "stories.csv")
    run("subscribers", "add", "ana@example.com", "--name", "Ana")
    result = run("preview", "--now", NOW, "--as", "ana@example.com", "--out", "pv")
    assert result.exit_code == 0, result.output
    html = (workdir / "pv" / "daily.html").read_text()
    assert "Hello Ana," in html and "Tram runs all night" in html
    assert "https://news.test/u/" in (workdir / "pv" / "daily.txt").read_text()
    assert str(Path("pv") / "daily.html") in result.output
    assert not (workdir / "outbox").exists()


def test_dry_run_says_who_would_get_it(workdir):
    run("ingest", "stories.csv")
    run("subscribers", "add", "ana@example.com")
    result = run("send", "--now", NOW, "--dry-run")
    assert "would go to 1 readers" in result.output
    assert not (workdir / "outbox").exists()


def test_stories_pin_score_and_list(workdir):
    run("ingest", "stories.csv")
    assert "pinned" in run("stories", "pin", "https://news.test/b").output
    assert "score 7" in run("stories", "score", "1", "7").output
    listing = run("stories", "list").output.splitlines()
    assert listing[0].startswith("1\t2026-11-26 05:00\t7\t-\tworld\tTram runs all night")
    assert "\tpinned\tscience\t" in listing[1]


def test_subscribers_add_list_and_unsubscribe(workdir):
    run("subscribers", "add", "ana@example.com", "--topics", "World;science")
    assert run("subscribers", "list").output == "ana@example.com\tactive\tUTC\tscience;world\t\n"
    run("subscribers", "unsubscribe", "ana@example.com")
    assert run("subscribers", "list", "--status", "active").output == ""


def test_the_demo_runs_the_whole_job_in_its_folder(workdir):
    result = run("demo", "--dir", "d", "--now", NOW)
    assert result.exit_code == 0, result.output
    assert "sent 8, failed 0" in result.output
    assert len(list((workdir / "d" / "outbox").rglob("*.eml"))) == 8
    assert (workdir / "d" / "preview" / "daily.html").exists()


def digest_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "digest", *args], cwd=cwd, capture_output=True, text=True
    )


def assert_one_clear_line(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    for text in expected:
        assert text in line


@pytest.mark.slow
def test_a_bad_config_is_one_clear_line_not_a_traceback(workdir):
    (workdir / "digest.toml").write_text('[newsletters.daily]\ntimezone = "Europe/Londn"\n')
    result = digest_process("send", "--dry-run", cwd=workdir)
    assert_one_clear_line(result, "Europe/Londn", "IANA time zone", "digest.toml")


@pytest.mark.slow
def test_a_config_typo_names_the_key_and_the_known_ones(workdir):
    (workdir / "digest.toml").write_text("[newsletters.daily]\ntop_storys = 3\n")
    result = digest_process("send", "--dry-run", cwd=workdir)
    assert_one_clear_line(result, "top_storys", "known keys are")


@pytest.mark.slow
def test_a_broken_template_is_one_clear_line_naming_the_file(workdir):
    templates = workdir / "templates"
    shutil.copytree(PROJECT_TEMPLATES, templates)
    (templates / "_top_story.html").write_text("{{ story.title }\n")
    write_config(workdir, templates={"path": "templates"})
    run("ingest", "stories.csv")
    result = digest_process("preview", "--now", NOW, cwd=workdir)
    assert_one_clear_line(result, "_top_story.html line 1")


@pytest.mark.slow
def test_a_bad_now_is_one_clear_line(workdir):
    result = digest_process("send", "--now", "tomorrow morning", cwd=workdir)
    assert_one_clear_line(result, "'tomorrow morning'", "ISO 8601")


def open_files_under(folder: Path) -> list[str]:
    """The files this process holds open under `folder` (Linux: /proc/self/fd)."""
    held = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = fd.readlink()
        except OSError:
            continue  # closed while listing (the listing's own descriptor)
        if target.is_relative_to(folder):
            held.append(target.name)
    return sorted(held)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize(
    "command",
    [
        ["ingest", "stories.csv"],
        ["subscribers", "import", "readers.csv"],
        ["subscribers", "list"],
        ["subscribers", "count"],
        ["stories", "list"],
        ["send", "--now", NOW],
        ["send", "--dry-run", "--now", NOW],
        ["run", "--now", NOW],
        ["status", "--now", NOW],
        ["preview", "--now", NOW],
    ],
    ids=" ".join,
)
def test_every_command_closes_the_database_it_opened(workdir, command):
    run("ingest", "stories.csv")
    run("subscribers", "import", "readers.csv")
    assert open_files_under(workdir) == []
    run(*command)
    assert open_files_under(workdir) == []


def test_a_reader_no_transport_can_deliver_to_fails_alone_and_the_send_goes_on(workdir):
    run("ingest", "stories.csv")
    run("subscribers", "import", "readers.csv")
    run("subscribers", "add", "bo@example.com")
    # As `subscribers add josé@example.com` stored it before addresses were checked for SMTPUTF8.
    db = open_db(workdir / "digest.db")
    db.execute("UPDATE subscribers SET email = 'josé@example.com' WHERE email = 'bo@example.com'")
    db.close()
    sent = CliRunner().invoke(cli, ["send", "--now", NOW])
    assert sent.exit_code == 1
    assert "daily at 2026-11-26 07:00 UTC: sent 1, failed 1, skipped 0, unknown 0" in sent.output
    assert "Sending stopped" not in sent.output
    assert len(list((workdir / "outbox").rglob("*.eml"))) == 1


def test_a_database_on_a_full_disk_is_one_clear_line_and_stays_consistent(workdir):
    from helpers import small_disk

    with small_disk(workdir / "small", "1m") as disk:
        db_path = disk / "digest.db"
        open_db(db_path).close()
        # Fill the rest of the disk.
        with open(disk / "filler", "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"x" * 4096)
            except OSError:
                # Room to open the database (its -wal and -shm files), not to import a list.
                filler.truncate(filler.tell() - 96 * 1024)
        rows = "".join(f"reader{n:05d}@example.com,Reader {n},,UTC\n" for n in range(5000))
        (workdir / "many.csv").write_text("email,name,topics,timezone\n" + rows)
        result = CliRunner().invoke(
            cli, ["--db", str(db_path), "subscribers", "import", "many.csv"]
        )
        assert result.exit_code == 1, result.output
        assert isinstance(result.exception, SystemExit)
        assert result.output.startswith("Error: The disk holding the database is full")
        assert result.output.count("\n") == 1
        (disk / "filler").unlink()
        db = open_db(db_path)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        db.close()
