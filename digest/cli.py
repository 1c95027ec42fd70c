"""The `digest` command: a thin click shell; each command opens the store and calls one function."""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import sys
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from sqlite_utils import Database

from .addresses import CONTROL_CHARACTERS
from .clock import parse_moment, utcnow
from .config import Config, load_config, with_overrides
from .errors import DigestError
from .invocation import digest_executable, remember_files
from .readers.subscriptions import SubscriberStatus
from .store import open_db

if TYPE_CHECKING:
    from .delivery.send import EditionResult

# `digest subscribers list --engagement`: feedback.list_health.readers_by_engagement's kinds.
ENGAGEMENT_KINDS = ("engaged", "cold", "asked")
# A click command function, as its option decorators return it.
Command = TypeVar("Command", bound=Callable[..., Any])


class DigestGroup(click.Group):
    """Turns our own errors into one clear line and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestError as exc:
            raise click.ClickException(str(exc)) from None
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):
                raise click.ClickException(
                    f"The disk holding the database is full ({exc}). What was being written was "
                    "rolled back and the database is consistent; free some space and run the "
                    "command again (`digest status` shows where a send stands)."
                ) from None
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            raise click.ClickException(
                f"The database is busy ({exc}): another process held it for over 30 s. "
                "Nothing was half-done; run the command again."
            ) from None


class State:
    """The config and database, loaded only when a command needs them."""

    def __init__(self, config_path: str | None, db_path: str | None):
        self.config_path = config_path
        self.db_path = db_path
        self._config: Config | None = None
        self._db: Database | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            config = load_config(self.config_path)
            if self.db_path:
                config = with_overrides(config, db_path=Path(self.db_path))
            self._config = config
            remember_files(config.source_path, config.db_path)
        return self._config

    def db(self) -> Database:
        """The database, opened once per command and closed when the command ends.

        A database that did not exist is named as new, on stderr: a command run in the
        wrong folder (or without the demo's `--db demo/digest.db`) must not quietly work
        on an empty one.
        """
        if self._db is None:
            path = self.config.db_path
            new = not path.exists()
            self._db = open_db(path)
            click.get_current_context().call_on_close(self._close_db)
            if new:
                click.echo(
                    f"digest: {path} did not exist: this is a new, empty database. {DATABASE_HINT}",
                    err=True,
                )
        return self._db

    def reading_db(self) -> Database:
        """The database for a command that reads it: one with no readers and no stories is
        named, so an empty answer is not taken for the truth about another one."""
        existed = self.config.db_path.exists()
        db = self.db()
        if existed and database_is_empty(db):
            click.echo(
                f"digest: {self.config.db_path} has no readers and no stories yet. {DATABASE_HINT}",
                err=True,
            )
        return db

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


pass_state = click.make_pass_decorator(State)
DATABASE_HINT = (
    "`--db FILE` (or DIGEST_DB) reads another; the demo's is demo/digest.db "
    "(`digest --db demo/digest.db studio`)."
)


def database_is_empty(db: Database) -> bool:
    return not db.execute(
        "SELECT EXISTS (SELECT 1 FROM subscribers) OR EXISTS (SELECT 1 FROM stories)"
    ).fetchone()[0]


def terminal_text(*fields: object) -> str:
    """Reader or feed text for a terminal, fields joined by tabs: each control character (an
    escape sequence, a CR rewriting the line) is printed escaped, as `\\x1b`, never run."""
    return "\t".join(
        CONTROL_CHARACTERS.sub(lambda m: m.group().encode("unicode_escape").decode(), str(f))
        for f in fields
    )


def terminal_json(data: object) -> str:
    """`data` as JSON for a terminal: control characters in it stay \\u escapes, other text as
    is (JSON escapes C0 controls itself; its own line breaks stay)."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return CONTROL_CHARACTERS.sub(
        lambda m: "".join(c if c == "\n" else f"\\u{ord(c):04x}" for c in m.group()), text
    )


def warn(message: str) -> None:
    click.secho(f"warning: {message}", fg="yellow", err=True)


def moment_option(function: Command) -> Command:
    return click.option(
        "--now",
        "now",
        metavar="ISO",
        help="Act as if it were this time (ISO 8601, UTC if no offset); default: the clock.",
    )(function)


def newsletter_option(function: Command) -> Command:
    return click.option(
        "--newsletter", metavar="NAME", help="Newsletter from the config; default: the first."
    )(function)


def force_option(function: Command) -> Command:
    return click.option(
        "--force",
        is_flag=True,
        help="Send variants whose checks found errors as they are; recorded with your user name.",
    )(function)


def _now(value: str | None) -> datetime:
    return parse_moment(value) if value else utcnow()


@click.group(cls=DigestGroup)
@click.version_option(package_name="digest")
@click.option(
    "--config",
    "config_path",
    envvar="DIGEST_CONFIG",
    metavar="FILE",
    help="Config file; default: digest.toml in the working directory. Env: DIGEST_CONFIG.",
)
@click.option(
    "--db",
    "db_path",
    metavar="FILE",
    help="SQLite database (relative to the working folder); default: the config's, which "
    "DIGEST_DB overrides (relative to the config file).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, db_path: str | None) -> None:
    """Build the daily digest from a story store and send it to every reader, once."""
    ctx.obj = State(config_path, db_path)
    # Readers' addresses go into the database, the outbox and exports: what a command run by
    # hand creates is its user's alone, as under cron/digest-run's `umask 077`.
    previous = os.umask(0o077)
    ctx.call_on_close(lambda: os.umask(previous))


@cli.command()
@click.argument("sources", nargs=-1, required=True)
@pass_state
def ingest(state: State, sources: tuple[str, ...]) -> None:
    """Read stories from feeds or files (RSS, Atom, JSON Feed, .jsonl, .csv) into the store.

    Each SOURCE is a path or an http(s) URL. A failing source is reported and the others
    still go in; the exit status is 1 if any failed.
    """
    from .newsroom.ingest import ingest_sources

    db = state.db()
    limits = state.config.ingest
    report = ingest_sources(db, sources, timeout=limits.timeout_seconds, max_bytes=limits.max_bytes)
    for result in report.results:
        click.echo(result.summary(), err=bool(result.error))
        for reason in result.skipped:
            click.echo(f"  skipped: {reason}", err=True)
    if report.failed:
        sys.exit(1)


@cli.command()
@newsletter_option
@moment_option
@click.option("--dry-run", is_flag=True, help="Build and report; send and record nothing.")
@click.option("--retry-failed", is_flag=True, help="Send the edition's failed recipients again.")
@click.option(
    "--resend-unknown",
    is_flag=True,
    help="Send again the batches a killed run left unknown (may duplicate those few).",
)
@click.option(
    "--timezone",
    metavar="TZ",
    help="Only readers in this time zone, at the slot read in it (as `digest run` sends).",
)
@force_option
@pass_state
def send(
    state: State,
    newsletter: str | None,
    now: str | None,
    dry_run: bool,
    retry_failed: bool,
    resend_unknown: bool,
    timezone: str | None,
    force: bool,
) -> None:
    """Send the newsletter's latest edition at or before --now to every active reader.

    Never a story a reader already got, per reader: readers who share topics, zone and the
    stories already sent to them share one variant; a different history gets its own.
    """
    from .delivery.send import send_newsletter
    from .delivery.transports import make_transport
    from .zones import check_timezone

    moment = _now(now)
    db = state.db()
    with TerminalProgress() as progress:
        report = send_newsletter(
            db,
            state.config,
            newsletter,
            moment,
            transport=None if dry_run else make_transport(state.config),
            dry_run=dry_run,
            retry_failed=retry_failed,
            resend_unknown=resend_unknown,
            timezone=check_timezone(timezone) if timezone else None,
            force=force,
            progress=progress,
        )
    for message in report.warnings:
        warn(message)
    for result in report.editions:
        click.echo(result.line())
    for line in report.attention():
        click.echo(line, err=True)
    click.echo(report.summary())
    if report.needs_attention:
        sys.exit(1)


class TerminalProgress:
    """One progress bar per edition on a terminal (recipients and batches); silent under cron."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.bars: dict[str, tuple] = {}

    def __call__(self, result: EditionResult, recipients: int) -> None:
        if not self.enabled:
            return
        slug = result.edition.slug
        if slug not in self.bars:
            bar = click.progressbar(
                length=result.audience,
                label=slug,
                file=sys.stderr,
                show_pos=True,
                item_show_func=lambda item: item,
            )
            self.bars[slug] = (bar.__enter__(), [0])
        bar, batches = self.bars[slug]
        batches[0] += 1
        bar.update(recipients, current_item=f"{batches[0]} batches")

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar, _ in self.bars.values():
            bar.__exit__(None, None, None)


@cli.command()
@newsletter_option
@moment_option
@click.option(
    "--as",
    "as_email",
    metavar="EMAIL",
    help="That reader's own slot and variant (topics, zone and history, per reader).",
)
@click.option(
    "--last", is_flag=True, help="The latest slot at or before --now, instead of the next one."
)
@click.option(
    "--out", "out_dir", default="preview", show_default=True, type=click.Path(file_okay=False)
)
@pass_state
def preview(
    state: State,
    newsletter: str | None,
    now: str | None,
    as_email: str | None,
    last: bool,
    out_dir: str,
) -> None:
    """Write what the next send would give a reader to DIR/<newsletter>.html and .txt.

    With --as, the reader's own variant: their topics, zone and history (no story they
    already got). The unsubscribe and preferences links in it are inert preview links: the
    files can be passed around without handing anyone a reader's permanent link.
    """
    from .preview import write_preview

    result = write_preview(
        state.reading_db(), state.config, newsletter, _now(now), Path(out_dir), as_email, last=last
    )
    for message in result.warnings:
        warn(message)
    which = "latest" if last else "next"
    click.echo(f"{which} slot: {result.slot}")
    if result.note:
        click.echo(f"note: {result.note}")
    click.echo(
        terminal_text(f"{result.subject}  ({result.story_count} stories, as {result.reader})")
    )
    click.echo(str(result.html_path))
    click.echo(str(result.text_path))


@cli.command()
@newsletter_option
@moment_option
@click.option("--verbose", "-v", is_flag=True, help="Then every variant's findings, ok ones too.")
@pass_state
def check(state: State, newsletter: str | None, now: str | None, verbose: bool) -> None:
    """Check every variant of the next send (size, links, images, text part, CSS); for CI.

    Prints a summary: how many variants, each distinct error and warning once, naming the
    story it is about and in how many variants; `--verbose` adds each variant's findings.
    Exits 1 if any is an error. With no readers yet, checks the edition a reader with every
    topic in the newsletter's time zone would get. A variant that would be skipped sends
    nothing and is not checked.
    """
    from .edition.checks import has_errors, summarize
    from .preview import check_next_send

    checked = check_next_send(state.reading_db(), state.config, newsletter, _now(now))
    summary = summarize([findings for _, findings in checked])
    click.echo(summary.headline())
    for line in summary.lines():
        click.echo(terminal_text(f"  {line}"))
    failed = any(has_errors(findings) for _, findings in checked)
    for view, findings in checked if verbose else []:
        target = view.target
        click.echo(
            terminal_text(
                f"{target.local_time} {';'.join(target.topics) or '*'}: {view.subject!r}"
                + (f" ({view.note})" if view.note else "")
            )
        )
        for finding in findings:
            click.echo(terminal_text(f"  {finding.line()}"))
    if failed:
        raise click.ClickException("errors found; fix them before the next send.")
    click.echo("no errors")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8026, show_default=True, type=click.IntRange(1, 65535), help="Port."
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a non-loopback --host: the studio shows readers' addresses and has no login.",
)
@click.option(
    "--allowed-host",
    "allowed_host_names",
    multiple=True,
    metavar="NAME",
    help="With --allow-remote: a host name the studio is reached by (repeatable).",
)
@newsletter_option
@moment_option
@pass_state
def studio(
    state: State,
    host: str,
    port: int,
    allow_remote: bool,
    allowed_host_names: tuple[str, ...],
    newsletter: str | None,
    now: str | None,
) -> None:
    """Run the editors' studio: every reader's next email, live, with checks and test sends."""
    from .delivery.transports import make_transport
    from .studio import allowed_hosts, is_loopback, serve_studio

    if not is_loopback(host) and not allow_remote:
        raise click.ClickException(
            f"--host {host} would open the studio to other machines: it shows readers' "
            "addresses, pins stories and sends test emails, with no login. Add --allow-remote "
            "if this network is trusted, or keep the default 127.0.0.1 (an SSH tunnel works)."
        )
    if allow_remote and not allowed_hosts(host, allowed_host_names):
        raise click.ClickException(
            f"--host {host} listens on every address, and the studio answers only to the "
            "names it is told (no DNS rebinding): add --allowed-host NAME for each name or "
            "address editors type in their browser, e.g. --allowed-host studio.newsroom.lan."
        )
    config = state.config
    if newsletter:
        config.newsletter(newsletter)

    def load_config() -> Config:
        # A fresh State each time: the studio calls this again when the config file changes.
        return State(state.config_path, state.db_path).config

    # Read (and made, if new) here, so the first page does not quietly show an empty store.
    state.reading_db()
    state._close_db()
    click.echo(
        f"digest studio on http://{host}:{port}/ reading {config.db_path} (Ctrl-C stops)",
        err=True,
    )
    serve_studio(
        load_config,
        make_transport(config),
        host,
        port,
        allowed_host_names=allowed_host_names,
        newsletter=newsletter,
        now=_now(now) if now else None,
    )


@cli.command()
@moment_option
@click.option(
    "--dir", "directory", default="demo", show_default=True, type=click.Path(file_okay=False)
)
@pass_state
def demo(state: State, now: str | None, directory: str) -> None:
    """Run the whole job on sample content in a fresh DIR: store, select, render, outbox."""
    from .demo import run_demo

    report = run_demo(state.config, Path(directory), _now(now))
    click.echo(f"stories: {report.stories.added} sample stories loaded")
    click.echo(report.subscribers.summary())
    for result in report.send.editions:
        click.echo(result.line())
    click.echo(report.send.summary())
    click.echo(f"outbox:  {report.outbox}")
    click.echo(f"preview: {report.preview.html_path}")
    click.echo(f"         {report.preview.text_path}")
    database = report.directory / "digest.db"
    click.echo(f"database: {database}; to look at it, give every command its --db:")
    for command in ("studio", "status", "report"):
        click.echo(f"  {digest_executable()} --db {shlex.quote(str(database))} {command}")


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
def init(directory: str) -> None:
    """Make DIR a newsroom: digest.toml, templates/, subscribers/, cron/ and a private .env.

    The cron files name DIR's real path, and .env holds a fresh secret key. Refuses to
    overwrite anything already there.
    """
    from .scaffold import init_newsroom

    for path in init_newsroom(Path(directory)):
        click.echo(f"created {path}")


@cli.command("run")
@moment_option
@force_option
@pass_state
def run_command(state: State, now: str | None, force: bool) -> None:
    """Ingest the sources, then send every newsletter slot that is due (cron runs this).

    Prints one line per action, or `nothing due`; exits 1 if something failed or a variant's
    checks found an error (that variant is held, the others go). A run started while another
    holds the lease says so and does nothing. No reader gets a story twice: a reader's
    history (what was already sent to them) picks their variant.
    """
    from .delivery.transports import make_transport
    from .run import run_due

    report = run_due(
        state.db(), state.config, _now(now), transport=make_transport(state.config), force=force
    )
    for line in report.lines:
        click.echo(line)
    if report.failed:
        sys.exit(1)


@cli.command("hold")
@click.argument("newsletter")
@click.option("--zone", metavar="TZ", help="Only the readers in this time zone; default: all.")
@click.option("--until", metavar="ISO", help="Release by itself at this time; default: never.")
@pass_state
def hold_command(state: State, newsletter: str, zone: str | None, until: str | None) -> None:
    """Hold NEWSLETTER: `digest run` and `digest send` send none of it until released."""
    from .delivery.holds import hold
    from .invocation import os_user
    from .zones import check_timezone

    name = state.config.newsletter(newsletter).name
    held = hold(
        state.db(),
        name,
        check_timezone(zone) if zone else None,
        parse_moment(until, "--until") if until else None,
        os_user(),
    )
    click.echo(f"{held.describe()}; `{held.release_command()}` lets it go.")


@cli.command("release")
@click.argument("newsletter")
@click.option("--zone", metavar="TZ", help="Only the hold on this time zone; default: every one.")
@pass_state
def release_command(state: State, newsletter: str, zone: str | None) -> None:
    """Release NEWSLETTER's holds: the next run sends its slots still within grace."""
    from .delivery.holds import release
    from .invocation import os_user
    from .zones import check_timezone

    name = state.config.newsletter(newsletter).name
    for held in release(state.db(), name, check_timezone(zone) if zone else None, os_user()):
        click.echo(f"released: {held.describe()}")


@cli.command()
@moment_option
@click.option("--limit", default=10, show_default=True, help="Recent slots per newsletter.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the status as one self-contained HTML page, a day strip per newsletter.",
)
@pass_state
def status(state: State, now: str | None, limit: int, html_file: Path | None) -> None:
    """Show the last runs, each newsletter's recent slots, what is due and what needs a hand."""
    from .status import digest_status, status_html

    found = digest_status(state.reading_db(), state.config, _now(now), limit)
    for line in found.lines():
        click.echo(line)
    if html_file is not None:
        _write_page(html_file, status_html(found), "the status")


def _write_page(path: Path, page: str, what: str) -> None:
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"Cannot write {what} to {path}: {exc}") from None
    click.echo(f"wrote {path}")


@cli.command()
@newsletter_option
@click.argument("edition", required=False, metavar="[EDITION | --last]")
@click.option("--last", is_flag=True, help="The last edition sent (the default).")
@click.option("--json", "as_json", is_flag=True, help="Print the same numbers as JSON.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the report with its charts as one self-contained HTML file (opens offline).",
)
@click.option(
    "--list",
    "list_health",
    is_flag=True,
    help="List health instead: readers active, engaged, cold, asked, lapsed, bounced... per day.",
)
@moment_option
@pass_state
def report(
    state: State,
    newsletter: str | None,
    edition: str | None,
    last: bool,
    as_json: bool,
    html_file: Path | None,
    list_health: bool,
    now: str | None,
) -> None:
    """What came of an edition (its local date, YYYY-MM-DD): delivered, bounced, opened, clicked.

    Per variant and in total, from the ledger and SendGrid's Event Webhook, with the rates on
    delivered, the most clicked stories and how complete the data is yet. With --list, the
    newsletter's list health: its readers by state now, and the last 90 days' counts.
    """
    from .feedback.report import edition_report, report_json, report_lines

    if list_health:
        from .feedback.list_health import list_health as health_of
        from .feedback.list_health import list_health_lines

        if edition or last or html_file is not None:
            raise click.UsageError(
                "--list reports on the whole list: give no EDITION, --last or --html."
            )
        health = health_of(state.reading_db(), state.config, newsletter, _now(now))
        click.echo(report_json(health) if as_json else "\n".join(list_health_lines(health)))
        return
    if edition and last:
        raise click.UsageError("Give EDITION or --last, not both.")
    if as_json and html_file is not None:
        raise click.UsageError("Give --json or --html FILE, not both.")
    data = edition_report(state.reading_db(), state.config, newsletter, edition)
    if html_file is not None:
        from .feedback.document import report_document

        _write_page(html_file, report_document(state.db(), state.config, data).html, "the report")
        return
    click.echo(report_json(data) if as_json else "\n".join(report_lines(data)))


@cli.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--daily",
    is_flag=True,
    help="Today's backup in [backup] dir unless there already, and old ones removed (cron).",
)
@pass_state
def backup(state: State, file: Path | None, daily: bool) -> None:
    """Copy the database to FILE, consistently while others write, then check the copy."""
    from .backups import backup as take_backup
    from .backups import daily_backup

    if (file is None) == (not daily):
        raise click.UsageError("Give FILE, or --daily (which uses [backup] dir), not both.")
    config = state.config
    if file is not None:
        size = take_backup(config.db_path, file)
        click.echo(f"backed up {config.db_path} to {file} ({size} bytes, integrity ok)")
        return
    if config.backup_dir is None:
        return  # no [backup] dir: the daily backup is off
    for line in daily_backup(config.db_path, config.backup_dir, config.backup.keep_days, utcnow()):
        click.echo(line)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--force",
    is_flag=True,
    help="Replace the database that exists (stop digest serve and cron first); it is kept.",
)
@pass_state
def restore(state: State, file: Path, force: bool) -> None:
    """Replace the database with the backup FILE, once it is checked whole and of a known schema."""
    from .backups import restore as restore_backup

    db_path = state.config.db_path
    kept = restore_backup(file, db_path, force=force)
    click.echo(
        f"restored {file} into {db_path}" + (f"; the replaced one is {kept}" if kept else "")
    )


@cli.group(cls=DigestGroup)
def webhook() -> None:
    """SendGrid's Event Webhook posts stored here."""


@webhook.command("discard")
@click.argument("post_id", metavar="ID", type=int)
@pass_state
def webhook_discard(state: State, post_id: int) -> None:
    """Give up on stored post ID that cannot be processed (`digest status` names it)."""
    from .feedback.events import discard_post

    note = discard_post(state.db(), post_id)
    click.echo(terminal_text(f"discarded webhook post {post_id} ({note}); its body is gone"))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8025,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port to listen on.",
)
@pass_state
def serve(state: State, host: str, port: int) -> None:
    """Run the readers' web app: sign-up, confirmation, unsubscribe, preferences, the archive.

    Refuses a placeholder or weak secret unless bound to 127.0.0.1 for an example site;
    behind a reverse proxy in production, see the README.
    """
    from .web import serve as serve_app

    click.echo(f"digest: serving on http://{host}:{port}/ (Ctrl-C stops)", err=True)
    serve_app(state.config, host, port)


@cli.group(cls=DigestGroup)
def archive() -> None:
    """The public archive: write it as static files, withdraw an edition or bring it back."""


@archive.command("build")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--newsletter", metavar="NAME", help="Only this newsletter (and the shared index).")
@moment_option
@pass_state
def archive_build(state: State, directory: str, newsletter: str | None, now: str | None) -> None:
    """Write the archive's pages, feeds and sitemap into DIRECTORY, as `digest serve` shows them.

    Same paths (a folder's page is its index.html); only changed files are rewritten, and
    the files of hidden editions are removed.
    """
    from .archive.static import build_static

    built = build_static(state.db(), state.config, Path(directory), newsletter, _now(now))
    click.echo(built.summary())


def _set_shown(state: State, newsletter: str, day: str, hidden: bool) -> None:
    from .archive.pages import Archive

    try:
        when = date.fromisoformat(day)
    except ValueError:
        raise click.BadParameter(f"{day!r} is not a date; write it as YYYY-MM-DD.") from None
    Archive(state.db(), state.config).set_hidden(newsletter, when, hidden)
    if hidden:
        click.echo(f"{newsletter} {when}: hidden from the archive, its feeds and its sitemap")
    else:
        click.echo(f"{newsletter} {when}: shown in the archive again")


@archive.command("hide")
@click.argument("newsletter")
@click.argument("day", metavar="DATE")
@pass_state
def archive_hide(state: State, newsletter: str, day: str) -> None:
    """Withdraw an edition (DATE in the newsletter's home zone) from the archive: 410 Gone."""
    _set_shown(state, newsletter, day, True)


@archive.command("show")
@click.argument("newsletter")
@click.argument("day", metavar="DATE")
@pass_state
def archive_show(state: State, newsletter: str, day: str) -> None:
    """Bring a hidden edition back into the archive."""
    _set_shown(state, newsletter, day, False)


@cli.group(cls=DigestGroup)
def subscribers() -> None:
    """Add, import, unsubscribe, list, count, export and forget readers."""


@subscribers.command("import")
@click.argument("csv_file", type=click.Path(dir_okay=False))
@newsletter_option
@pass_state
def subscribers_import(state: State, csv_file: str, newsletter: str | None) -> None:
    """Import readers from a CSV with columns email, name, topics, timezone.

    New readers are subscribed to the newsletter. Bad rows are reported with their line
    number and the good rows still go in; unsubscribed, bounced, complained and forgotten
    addresses are reported and left as they are.
    """
    from .readers.subscribers import import_csv

    report = import_csv(state.db(), csv_file, state.config.newsletter(newsletter).name)
    for line, reason in report.bad_rows:
        click.echo(f"{csv_file}:{line}: {reason}", err=True)
    for note in report.suppressed:
        click.echo(f"{csv_file}: {note}; not reactivated", err=True)
    click.echo(report.summary())


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", help="The reader's name, used in the greeting.")
@click.option("--topics", default="", help="Categories separated by ';' (empty: every topic).")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone.")
@newsletter_option
@pass_state
def subscribers_add(
    state: State, email: str, name: str, topics: str, timezone: str, newsletter: str | None
) -> None:
    """Add one active reader, subscribed to the newsletter."""
    from .readers.subscribers import add_subscriber

    subscriber = add_subscriber(
        state.db(),
        email,
        name,
        topics.split(";"),
        timezone,
        newsletter=state.config.newsletter(newsletter).name,
    )
    click.echo(f"added {subscriber.email} (id {subscriber.id})")


def newsletter_filter(function: Command) -> Command:
    return click.option(
        "--newsletter",
        metavar="NAME",
        help="Only this newsletter, with each reader's status for it; default: the address.",
    )(function)


def _newsletter_name(state: State, newsletter: str | None) -> str | None:
    return state.config.newsletter(newsletter).name if newsletter else None


@subscribers.command("unsubscribe")
@click.argument("email")
@click.option("--newsletter", metavar="NAME", help="Only from this one; default: from every one.")
@pass_state
def subscribers_unsubscribe(state: State, email: str, newsletter: str | None) -> None:
    """Unsubscribe a reader from one newsletter, or from all of them."""
    from .readers.subscribers import unsubscribe

    subscriber = unsubscribe(state.db(), email, _newsletter_name(state, newsletter))
    click.echo(
        terminal_text(
            f"unsubscribed {subscriber.email}" + (f" from {newsletter}" if newsletter else "")
        )
    )


@subscribers.command("list")
@click.option(
    "--status",
    type=click.Choice([status.value for status in SubscriberStatus]),
    help="Only this status.",
)
@click.option("--topic", help="Only readers who chose this topic.")
@click.option(
    "--engagement",
    type=click.Choice(ENGAGEMENT_KINDS),
    help="Only the newsletter's active readers who are engaged (30 days), cold, or asked.",
)
@newsletter_filter
@moment_option
@pass_state
def subscribers_list(
    state: State,
    status: str | None,
    topic: str | None,
    engagement: str | None,
    newsletter: str | None,
    now: str | None,
) -> None:
    """List readers: email, status, time zone, topics, name (tab-separated)."""
    from .readers.subscribers import list_subscribers

    name = _newsletter_name(state, newsletter)
    wanted: set[int] | None = None
    if engagement:
        from .feedback.list_health import readers_by_engagement

        name = state.config.newsletter(newsletter).name
        wanted = set(
            readers_by_engagement(state.reading_db(), state.config, name, engagement, _now(now))
        )
    readers = list_subscribers(state.reading_db(), status, topic, name)
    for s in readers:
        if wanted is not None and s.id not in wanted:
            continue
        click.echo(terminal_text(s.email, s.status, s.timezone, ";".join(s.topics) or "*", s.name))


@subscribers.command("count")
@newsletter_filter
@pass_state
def subscribers_count(state: State, newsletter: str | None) -> None:
    """Count readers by status (every status, zeros too), then the total."""
    from .readers.subscribers import count_by_status

    counts = count_by_status(state.reading_db(), _newsletter_name(state, newsletter))
    for status, n in counts.items():
        click.echo(f"{status}\t{n}")
    click.echo(f"total\t{sum(counts.values())}")


@subscribers.command("export")
@click.argument("csv_file", type=click.Path(dir_okay=False))
@pass_state
def subscribers_export(state: State, csv_file: str) -> None:
    """Write the whole list, every status, to a CSV that `subscribers import` reads back."""
    from .readers.subscribers import export_csv

    count = export_csv(state.db(), csv_file)
    click.echo(f"exported {count} readers to {csv_file}")


@subscribers.command("export-data")
@click.argument("email")
@pass_state
def subscribers_export_data(state: State, email: str) -> None:
    """Print everything stored about one reader as JSON (a subject access request)."""
    from .readers.privacy import export_data

    click.echo(terminal_json(export_data(state.db(), email)))


@subscribers.command("forget")
@click.argument("email")
@pass_state
def subscribers_forget(state: State, email: str) -> None:
    """Delete a reader's data and deliveries; keep a salted hash so they are never re-added."""
    from .feedback.events import erase_address_from_posts
    from .readers.privacy import forget

    erasers = {"webhook posts": erase_address_from_posts}
    report = forget(state.db(), email, state.config.outbox_dir, erasers)
    click.echo(terminal_text(report.summary()))


@cli.group(cls=DigestGroup)
def stories() -> None:
    """List stories and set an editor's pin or score."""


@stories.command("list")
@click.option("--limit", default=50, show_default=True, help="How many, newest first.")
@newsletter_option
@moment_option
@pass_state
def stories_list(state: State, limit: int, newsletter: str | None, now: str | None) -> None:
    """List stories: id, published time, score, pin, category, title, url, and lift.

    Lift is what the newsletter's readers made of the story in the last window's editions
    (click-through over what its positions predict; see the ranking docs), with how many
    readers it reached; "-" for a story no edition of the window carried.
    """
    from .edition.lift import story_lifts
    from .newsroom.stories import list_stories

    db = state.reading_db()
    lifts = story_lifts(db, state.config.newsletter(newsletter), _now(now))
    for s in list_stories(db, limit):
        pin = "pinned" if s.pinned else "-"
        published = f"{s.published_at:%Y-%m-%d %H:%M}"
        found = lifts.get(s.id)
        lift = f"lift {found.lift:.2f} ({found.impressions} readers)" if found else "-"
        click.echo(
            terminal_text(s.id, published, f"{s.score:g}", pin, s.category, s.title, s.url, lift)
        )


def _editorial(state: State, ref: str, **change: Any) -> None:
    from .newsroom.stories import set_story_editorial

    story = set_story_editorial(state.db(), ref, **change)
    click.echo(f"{story.id}: score {story.score:g}, {'pinned' if story.pinned else 'not pinned'}")


@stories.command("pin")
@click.argument("story")
@pass_state
def stories_pin(state: State, story: str) -> None:
    """Pin STORY (id or url) to the top; kept when its feed is read again."""
    _editorial(state, story, pinned=True)


@stories.command("unpin")
@click.argument("story")
@pass_state
def stories_unpin(state: State, story: str) -> None:
    """Unpin STORY (id or url)."""
    _editorial(state, story, pinned=False)


@stories.command("score")
@click.argument("story")
@click.argument("value", type=float)
@pass_state
def stories_score(state: State, story: str, value: float) -> None:
    """Set STORY's editorial score (higher ranks first); kept when its feed is read again."""
    _editorial(state, story, score=value)


@cli.group(cls=DigestGroup)
def edition() -> None:
    """Edit one edition: drop a story from it, give it a subject, preheader or editor's note."""


def edition_option(function: Command) -> Command:
    function = click.option(
        "--edition",
        "edition_date",
        metavar="YYYY-MM-DD",
        help="The edition's local date; default: the next one `digest run` sends.",
    )(function)
    return newsletter_option(moment_option(function))


def _edit(
    state: State,
    newsletter: str | None,
    now: str | None,
    edition_date: str | None,
    action: str,
    **what: Any,
) -> None:
    from .edition.edits import record_edit
    from .invocation import os_user
    from .preview import next_edition_date

    config = state.config.newsletter(newsletter)
    db = state.db()
    date = edition_date or next_edition_date(db, config, _now(now))
    edit = record_edit(db, config.name, date, action, os_user(), **what)
    click.echo(terminal_text(f"{config.name} {date}: {edit.describe()}"))


@edition.command("drop")
@click.argument("story")
@edition_option
@pass_state
def edition_drop(
    state: State, story: str, newsletter: str | None, now: str | None, edition_date: str | None
) -> None:
    """Leave STORY (id or url) out of one edition; the story stays in the store."""
    _edit(state, newsletter, now, edition_date, "drop", story=story)


@edition.command("restore")
@click.argument("story")
@edition_option
@pass_state
def edition_restore(
    state: State, story: str, newsletter: str | None, now: str | None, edition_date: str | None
) -> None:
    """Put a dropped STORY back into the edition."""
    _edit(state, newsletter, now, edition_date, "restore", story=story)


@edition.command("subject")
@click.argument("text")
@edition_option
@pass_state
def edition_subject(
    state: State, text: str, newsletter: str | None, now: str | None, edition_date: str | None
) -> None:
    """The edition's own subject line ("" goes back to the newsletter's template)."""
    _edit(state, newsletter, now, edition_date, "subject", value=text)


@edition.command("preheader")
@click.argument("text")
@edition_option
@pass_state
def edition_preheader(
    state: State, text: str, newsletter: str | None, now: str | None, edition_date: str | None
) -> None:
    """The edition's own preheader ("" goes back to the newsletter's template)."""
    _edit(state, newsletter, now, edition_date, "preheader", value=text)


@edition.command("note")
@click.argument("text")
@edition_option
@pass_state
def edition_note(
    state: State, text: str, newsletter: str | None, now: str | None, edition_date: str | None
) -> None:
    """An editor's note at the top of the email ("" removes it)."""
    _edit(state, newsletter, now, edition_date, "note", value=text)


@edition.command("show")
@edition_option
@pass_state
def edition_show(
    state: State, newsletter: str | None, now: str | None, edition_date: str | None
) -> None:
    """The edition's edits as they stand, then every edit made (who, when, what)."""
    from .edition.edits import current_edits, edit_trail
    from .preview import next_edition_date

    config = state.config.newsletter(newsletter)
    db = state.db()
    date = edition_date or next_edition_date(db, config, _now(now))
    edits = current_edits(db, config.name, date)
    click.echo(f"{config.name} edition {date}")
    click.echo(f"  dropped: {', '.join(map(str, sorted(edits.dropped))) or 'none'}")
    for name in ("subject", "preheader", "note"):
        value = getattr(edits, name)
        click.echo(terminal_text(f"  {name}: {value!r}" if value else f"  {name}: the template's"))
    trail = edit_trail(db, config.name, date)
    click.echo("audit trail:" if trail else "audit trail: no edits")
    for edit in trail:
        click.echo(terminal_text(f"  {edit.describe()}"))
