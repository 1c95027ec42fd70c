"""Load and check `digest.toml`: the site, the transport and each newsletter's settings."""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import available_timezones

from croniter import CroniterError, croniter
from email_validator import EmailNotValidError, validate_email

from .errors import ConfigError
from .text import without_controls

_PACKAGE = Path(__file__).resolve().parent
# The shipped newsroom files (digest.toml, templates/, subscribers/, cron/): a wheel carries
# copies under digest/shipped/ (setup.py puts them there at build time); a source checkout
# or an editable install reads the repository's own top-level folders.
SHIPPED = _PACKAGE / "shipped" if (_PACKAGE / "shipped").is_dir() else _PACKAGE.parent
# The shipped templates: the default when a config names none.
PROJECT_TEMPLATES = SHIPPED / "templates"
PLACEHOLDER_SECRET = "change-me-in-production"
# A secret shorter than this could be guessed offline from one signed link.
MIN_SECRET_LENGTH = 32
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# Settings beside the config file, read by every entry point (CLI, WSGI app, cron wrapper).
ENV_FILE = ".env"
TRANSPORTS = ("outbox", "sendgrid")
# The most a number may be: past these, a value is a typo and would overflow a time span or
# make an edition nobody can read. Any other number stops at MAX_NUMBER.
MAX_NUMBER = 2**31 - 1
NUMBER_LIMITS = {
    "mail_hour": 23,
    "grace_hours": 8760,
    "window_hours": 8760,
    "half_life_hours": 8760,
    "also_read_days": 365,
    "top_stories": 100,
    "recent_posts": 100,
    "per_category": 100,
    "min_stories": 100,
    "timeout_seconds": 3600,
    "backoff_seconds": 3600,
    "max_backoff_seconds": 3600,
    "max_attempts": 100,
    "max_megabytes": 1024,
    "weight": 10,
    "exploration": 1,
    "history_days": 365,
    "after_days": 3650,
    "min_editions": 10000,
    "grace_days": 365,
}
# Strings that go into mail headers (the subject and title through templates).
ONE_LINE_KEYS = frozenset({"subject", "title", "from_name", "reply_to", "from_email", "name"})
# In the tz database but not places: they exist for its own build, not for readers.
NOT_PLACES = ("Factory", "localtime", "posixrules")


@dataclass(frozen=True)
class UtmSettings:
    """UTM parameters added to story links; off unless `enabled`."""

    enabled: bool = False
    """Add UTM parameters to story links."""
    source: str = "newsletter"
    """utm_source."""
    medium: str = "email"
    """utm_medium."""
    campaign: str = "{newsletter}"
    """utm_campaign; `{newsletter}` is replaced by the newsletter's name."""


@dataclass(frozen=True)
class EngagementSettings:
    """How readers' clicks move the next lineup (`edition.lift`; the formula in `select`).

    `weight` 1 lets a story read twice as often as its position predicts rank as if its
    editor's score were doubled (or as if it were one half-life younger); 0 turns it off.
    """

    weight: float = 1.0
    """How much a story's lift moves its rank: `rank = editor_rank * lift ** weight` (0 to
    10); 0 turns it off and the lineup is the editor's alone."""
    min_impressions: int = 200
    """Readers a story must have reached before its lift counts; before, it is unproven."""
    exploration: float = 0.2
    """The share of top-story places (0 to 1) kept for unproven stories, so new stories
    still get seen."""
    history_days: float = 28.0
    """How many days back the click-through expected at each position is learned."""


@dataclass(frozen=True)
class SunsetSettings:
    """When readers who stopped reading are asked once, then rest (`feedback.sunset`)."""

    enabled: bool = True
    """Ask readers who stopped reading once, then let them lapse; false: mail everyone."""
    after_days: int = 90
    """A reader is cold after no human open or click for this many days..."""
    min_editions: int = 20
    """...across at least this many editions the webhook reported on (newcomers are exempt)."""
    grace_days: int = 14
    """How long an asked reader has to press the keep button before they lapse."""


@dataclass(frozen=True)
class NewsletterConfig:
    """One newsletter: what it selects, how it is titled, when it is due."""

    name: str
    title: str = "Daily Digest"
    """The newsletter's name in the email's header and its `List-Id`."""
    description: str = ""
    """What the newsletter carries, in a sentence: the sign-up page, the archive and its
    feed show it."""
    subject: str = "{{ newsletter.title }}: {{ top_stories[0].title if top_stories else 'today' }}"
    """The subject line: a Jinja template over `newsletter`, `site`, `top_stories`,
    `recent_posts`, `edition_date`."""
    preheader: str = "{{ top_stories | map(attribute='title') | join(' · ') }}"
    """The inbox preview line after the subject: a Jinja template over the same values."""
    schedule: str = "0 7 * * *"
    """When it is sent: a five-field cron expression, read in each reader's own time zone."""
    timezone: str = "UTC"
    """The time zone of readers who set none, and of the newsletter's own dates."""
    grace_hours: float = 6.0
    """How late a slot may still be sent; after that it is missed."""
    window_hours: float = 24.0
    """How far back top stories and recent posts reach."""
    top_stories: int = 5
    """How many top stories an edition leads with."""
    recent_posts: int = 8
    """How many recent posts follow them."""
    per_category: int = 2
    """The most top stories from one category."""
    half_life_hours: float = 12.0
    """How fast a story's score decays with age."""
    also_read: bool = True
    """Show an "Also read" link under a story that has one."""
    also_read_days: float = 7.0
    """How old a story an "Also read" link may point to."""
    min_stories: int = 1
    """Fewer new stories than this for a reader: their edition is skipped."""
    sources: tuple[str, ...] = ()
    """Feeds (http(s) URLs, or files relative to the config file) that `digest run` ingests
    first."""
    categories: tuple[str, ...] = ()
    """SendGrid categories every message of this newsletter carries."""
    asm_group_id: int | None = None
    """SendGrid's unsubscribe group (suppression group) id, if any."""
    archive: bool = True
    """Its editions' web copies, archive pages and feeds are public (false: they answer 404,
    and its emails have no "View in your browser" link)."""
    utm: UtmSettings = field(default_factory=UtmSettings)
    """UTM parameters on story links: the `[newsletters.NAME.utm]` table."""
    engagement: EngagementSettings = field(default_factory=EngagementSettings)
    """How readers' clicks move the next lineup: the `[newsletters.NAME.engagement]` table."""
    sunset: SunsetSettings = field(default_factory=SunsetSettings)
    """The sunset policy: the `[newsletters.NAME.sunset]` table."""


@dataclass(frozen=True)
class SiteConfig:
    """The publisher: shown in every email's header and footer."""

    name: str = "Example News"
    """The publisher's name, shown in every email."""
    url: str = "https://news.example.com"
    """The public site: readers' links are `<url>/u/<token>`."""
    postal_address: str = "1 Example Street, Springfield"
    """The postal address every email's footer carries (the law asks for one)."""
    from_email: str = "digest@news.example.com"
    """The sender's address."""
    from_name: str = "Example News"
    """The sender's name."""
    reply_to: str = ""
    """Where replies go; empty: to the sender."""


@dataclass(frozen=True)
class SendGridSettings:
    """SendGrid transport options; the API key only ever comes from the environment."""

    api_host: str = "https://api.sendgrid.com"
    """The API host (`SENDGRID_API_HOST` wins); tests point it at a local server."""
    batch_size: int = 1000
    """Readers per Mail Send request (1 to 1000)."""
    concurrency: int = 16
    """The most batches under way at once (1 to 64), each over a kept-alive connection: as
    many as the answers' latency needs, 2 when they come fast."""
    timeout_seconds: float = 30.0
    """How long one request may take before it is given up."""
    max_attempts: int = 5
    """Tries of one batch on 429, 5xx and connection errors."""
    backoff_seconds: float = 1.0
    """The first wait between tries; it doubles each time."""
    max_backoff_seconds: float = 60.0
    """The longest wait between tries."""
    retry_after_timeout: bool = False
    """Retry a request that got no answer (may duplicate its batch) instead of leaving it
    unknown."""
    sandbox_mode: bool = False
    """SendGrid checks each request but delivers nothing; its 200 counts as sent (provider id
    `sandbox`), so those readers are not mailed again by that edition."""


@dataclass(frozen=True)
class IngestSettings:
    """Limits on reading a source over HTTP: each fetch, all of it, and its body."""

    timeout_seconds: float = 30.0
    """The most one HTTP fetch of a source may take, all of it."""
    max_megabytes: float = 20.0
    """The largest body a source may send; a larger one is refused as it streams in."""

    @property
    def max_bytes(self) -> int:
        return int(self.max_megabytes * 1024 * 1024)


@dataclass(frozen=True)
class ReportSettings:
    """The report editors get by mail: to whom, and at what local hour the morning after."""

    mail_to: tuple[str, ...] = ()
    """Editors who get each edition's report by mail the morning after (`digest run` sends
    it, once each, PNG charts inline); none: no report is mailed."""
    mail_hour: int = 8
    """From this hour (0 to 23), in each newsletter's time zone, on the day after an
    edition, `digest run` mails its report."""


@dataclass(frozen=True)
class SignupSettings:
    """How many sign-ups the form takes (counted in the database, shared by every worker)."""

    per_client_per_hour: int = 20
    """Sign-ups from one client address in an hour."""
    per_hour: int = 1000
    """Sign-ups from everyone in an hour."""
    per_mailbox_per_day: int = 5
    """Confirmation emails to one mailbox (a+x@ and a+y@ are one) a day."""
    # Reverse proxies in front of the app that add X-Forwarded-For: the client is the
    # address the farthest of them saw (0: the address that connected).
    proxies: int = 0
    """Reverse proxies in front of the app that add `X-Forwarded-For` (0: the address that
    connected is the client)."""


@dataclass(frozen=True)
class ArchiveSettings:
    """The public archive: where `digest run` writes its static copy ("" for none)."""

    static_dir: str = ""
    """A folder (relative to the config file) where `digest run` keeps a static copy of the
    archive after each send; "" for none."""


@dataclass(frozen=True)
class BackupSettings:
    """The daily backup `cron/digest-run` takes (`digest backup --daily`): where, how long kept."""

    dir: str = ""
    """A folder (relative to digest.toml) for the daily backup; empty: no daily backup."""
    keep_days: int = 14
    """Daily backups older than this many days are removed."""


@dataclass(frozen=True)
class Config:
    """Everything a command needs to know, with paths already resolved."""

    db_path: Path
    templates_dir: Path
    outbox_dir: Path
    transport: str
    secret_key: str
    site: SiteConfig
    newsletters: Mapping[str, NewsletterConfig]
    sendgrid: SendGridSettings = field(default_factory=SendGridSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    signup: SignupSettings = field(default_factory=SignupSettings)
    archive: ArchiveSettings = field(default_factory=ArchiveSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    source_path: Path | None = None
    backup: BackupSettings = field(default_factory=BackupSettings)

    @property
    def backup_dir(self) -> Path | None:
        """Where the daily backups go, or None when `[backup] dir` is not set."""
        if not self.backup.dir:
            return None
        base = self.source_path.parent if self.source_path else Path.cwd()
        return base / self.backup.dir

    @property
    def archive_dir(self) -> Path | None:
        """The folder of the static archive `digest run` keeps up to date, if one is set."""
        if not self.archive.static_dir:
            return None
        base = self.source_path.parent if self.source_path else Path.cwd()
        return base / self.archive.static_dir

    def newsletter(self, name: str | None) -> NewsletterConfig:
        """The named newsletter, or the only/first one when no name is given."""
        if name is None:
            return next(iter(self.newsletters.values()))
        try:
            return self.newsletters[name]
        except KeyError:
            known = ", ".join(self.newsletters) or "none"
            raise ConfigError(
                f"No newsletter named {name!r} in the config (known: {known}); "
                f"add a [newsletters.{name}] table or pick a known one."
            ) from None


@dataclass(frozen=True)
class PathKey:
    """A key of the tables `parse_config` reads by hand: paths and the transport's choice."""

    default: str
    meaning: str


# Read by hand, not through a dataclass: a path is resolved against the config file's folder,
# and a setting from the environment wins over the file.
PATH_KEYS: dict[str, dict[str, PathKey]] = {
    "store": {
        "path": PathKey("digest.db", "The SQLite database (`DIGEST_DB`, or `--db`, wins)."),
    },
    "templates": {
        "path": PathKey("the shipped templates/", "The folder of the email templates."),
    },
    "transport": {
        "kind": PathKey("outbox", "`outbox` or `sendgrid` (`DIGEST_TRANSPORT` wins)."),
        "outbox": PathKey("outbox", "The outbox transport's folder (`DIGEST_OUTBOX` wins)."),
        "secret_key": PathKey(
            PLACEHOLDER_SECRET,
            "Signs readers' links; set `DIGEST_SECRET_KEY` in `.env` instead in production.",
        ),
    },
}
# Every table of digest.toml and what defines its keys: the dataclass whose fields (and their
# docstrings) are the keys, or PATH_KEYS. The configuration reference is generated from this.
SECTIONS: dict[str, type | dict[str, PathKey]] = {
    "site": SiteConfig,
    "store": PATH_KEYS["store"],
    "templates": PATH_KEYS["templates"],
    "transport": PATH_KEYS["transport"],
    "sendgrid": SendGridSettings,
    "ingest": IngestSettings,
    "signup": SignupSettings,
    "archive": ArchiveSettings,
    "report": ReportSettings,
    "backup": BackupSettings,
    "newsletters.NAME": NewsletterConfig,
    "newsletters.NAME.utm": UtmSettings,
    "newsletters.NAME.engagement": EngagementSettings,
    "newsletters.NAME.sunset": SunsetSettings,
}


def _where(path: Path | None) -> str:
    return str(path) if path else "the built-in defaults"


def _build(
    cls: type, values: Mapping[str, Any], section: str, path: Path | None, **extra: Any
) -> Any:
    """Make a dataclass from a TOML table, rejecting unknown keys and wrong types by name."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"[{section}] in {_where(path)} must be a table.")
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = dict(extra)
    for key, value in values.items():
        if key not in known or key in extra:
            raise ConfigError(
                f"Unknown key {key!r} in [{section}] of {_where(path)}; "
                f"known keys are: {', '.join(k for k in known if k not in extra)}."
            )
        default = known[key].default
        if default is None and known[key].type == "int | None":
            default = 0  # an optional whole number (asm_group_id): checked like one
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{section}.{key} in {_where(path)} must be true or false.")
        if isinstance(default, int | float) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{section}.{key} in {_where(path)} must be a number.")
            if isinstance(default, int) and not isinstance(value, int):
                raise ConfigError(f"{section}.{key} in {_where(path)} must be a whole number.")
            if not math.isfinite(value):
                raise ConfigError(f"{section}.{key} in {_where(path)} must be a finite number.")
            if value < 0:
                raise ConfigError(f"{section}.{key} in {_where(path)} must not be negative.")
            limit = NUMBER_LIMITS.get(key, MAX_NUMBER)
            if value > limit:
                raise ConfigError(f"{section}.{key} in {_where(path)} must be at most {limit}.")
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{section}.{key} in {_where(path)} must be a string.")
        if key in ONE_LINE_KEYS and without_controls(value) != value:
            raise ConfigError(
                f"{section}.{key} in {_where(path)} holds a line break or another control "
                "character; it goes into a mail header, so write it on one line."
            )
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{section}.{key} in {_where(path)} must be a list of strings.")
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def _newsletter(name: str, values: Mapping[str, Any], path: Path | None) -> NewsletterConfig:
    if not re.fullmatch(r"[a-z0-9_-]+", name):
        raise ConfigError(
            f"Newsletter name {name!r} in {_where(path)} may use only a-z, 0-9, '-' and '_' "
            "(it appears in links and file names); rename the [newsletters.NAME] table."
        )
    values = dict(values)
    utm = _build(UtmSettings, values.pop("utm", {}), f"newsletters.{name}.utm", path)
    sunset = _build(SunsetSettings, values.pop("sunset", {}), f"newsletters.{name}.sunset", path)
    if sunset.after_days < 1 or sunset.min_editions < 1 or sunset.grace_days < 1:
        raise ConfigError(
            f"newsletters.{name}.sunset in {_where(path)}: after_days, min_editions and "
            "grace_days must be at least 1 (set enabled = false to turn the policy off)."
        )
    engagement = _build(
        EngagementSettings, values.pop("engagement", {}), f"newsletters.{name}.engagement", path
    )
    nl: NewsletterConfig = _build(
        NewsletterConfig,
        values,
        f"newsletters.{name}",
        path,
        name=name,
        utm=utm,
        engagement=engagement,
        sunset=sunset,
    )
    if not is_place_timezone(nl.timezone):
        raise ConfigError(
            f"newsletters.{name}.timezone {nl.timezone[:60]!r} in {_where(path)} is not an IANA "
            "time zone; use a name such as 'Europe/London' or 'UTC'."
        )
    if len(nl.schedule.split()) != 5 or not croniter.is_valid(nl.schedule):
        raise ConfigError(
            f"newsletters.{name}.schedule {nl.schedule[:60]!r} in {_where(path)} is not a "
            "five-field cron expression; write it like '0 7 * * *' (07:00 daily) or "
            "'0 8 * * MON'."
        )
    try:
        croniter(nl.schedule).get_next()
    except CroniterError:
        raise ConfigError(
            f"newsletters.{name}.schedule {nl.schedule!r} in {_where(path)} never fires "
            "(a day that month does not have?); fix the day or the month."
        ) from None
    if not nl.subject.strip() or not nl.title.strip():
        raise ConfigError(
            f"newsletters.{name}.subject and .title in {_where(path)} must not be empty "
            "(a message without a subject is refused); write one."
        )
    if nl.top_stories < 1 or nl.per_category < 1 or nl.window_hours <= 0:
        raise ConfigError(
            f"newsletters.{name} in {_where(path)}: top_stories, per_category and "
            "window_hours must be at least 1."
        )
    if engagement.history_days <= 0:
        raise ConfigError(
            f"newsletters.{name}.engagement.history_days in {_where(path)} must be > 0."
        )
    if nl.half_life_hours <= 0:
        raise ConfigError(f"newsletters.{name}.half_life_hours in {_where(path)} must be > 0.")
    return nl


def parse_config(data: Mapping[str, Any], path: Path | None, env: Mapping[str, str]) -> Config:
    """Turn parsed TOML into a checked Config; relative paths are relative to the file."""
    base = path.parent if path else Path.cwd()
    data = dict(data)
    known_sections = {name.split(".")[0] for name in SECTIONS}
    for key in data:
        if key not in known_sections:
            raise ConfigError(
                f"Unknown section [{key}] in {_where(path)}; "
                f"known sections are: {', '.join(sorted(known_sections))}."
            )
    site = _build(SiteConfig, data.get("site", {}), "site", path)
    if not re.fullmatch(r"https?://[^\s&<>\"']+", site.url):
        raise ConfigError(
            f"site.url {site.url!r} in {_where(path)} must be an http(s) URL without spaces, "
            "quotes, '&', '<' or '>' (unsubscribe links are built from it)."
        )
    for key in ("from_email", "reply_to"):
        address = getattr(site, key)
        if address or key == "from_email":
            _check_sender_address(f"site.{key}", address, path)
    sendgrid = _build(SendGridSettings, data.get("sendgrid", {}), "sendgrid", path)
    if not 1 <= sendgrid.batch_size <= 1000:
        raise ConfigError(f"sendgrid.batch_size in {_where(path)} must be from 1 to 1000.")
    if not 1 <= sendgrid.concurrency <= 64:
        raise ConfigError(f"sendgrid.concurrency in {_where(path)} must be from 1 to 64.")
    if sendgrid.max_attempts < 1:
        raise ConfigError(f"sendgrid.max_attempts in {_where(path)} must be at least 1.")
    signup = _build(SignupSettings, data.get("signup", {}), "signup", path)
    archive = _build(ArchiveSettings, data.get("archive", {}), "archive", path)
    report = _build(ReportSettings, data.get("report", {}), "report", path)
    for address in report.mail_to:
        _check_sender_address("report.mail_to", address, path)
    backup = _build(BackupSettings, data.get("backup", {}), "backup", path)
    if backup.keep_days < 1:
        raise ConfigError(f"backup.keep_days in {_where(path)} must be at least 1.")

    ingest = _build(IngestSettings, data.get("ingest", {}), "ingest", path)
    if ingest.timeout_seconds <= 0 or ingest.max_megabytes <= 0:
        raise ConfigError(
            f"ingest.timeout_seconds and ingest.max_megabytes in {_where(path)} must be above 0."
        )
    store = data.get("store", {})
    templates = data.get("templates", {})
    transport = data.get("transport", {})
    for section, table in (("store", store), ("templates", templates), ("transport", transport)):
        keys = set(PATH_KEYS[section])
        if not isinstance(table, Mapping) or set(table) - keys:
            raise ConfigError(
                f"[{section}] in {_where(path)} takes only: {', '.join(sorted(keys))}."
            )

    db_path = Path(env.get("DIGEST_DB") or store.get("path", "digest.db"))
    templates_dir = Path(templates["path"]) if "path" in templates else PROJECT_TEMPLATES
    outbox_dir = Path(env.get("DIGEST_OUTBOX") or transport.get("outbox", "outbox"))
    kind = env.get("DIGEST_TRANSPORT") or transport.get("kind", "outbox")
    if kind not in TRANSPORTS:
        raise ConfigError(
            f"Transport {kind!r} (from "
            f"{'DIGEST_TRANSPORT' if env.get('DIGEST_TRANSPORT') else _where(path)}) "
            f"is not known; use one of: {', '.join(TRANSPORTS)}."
        )
    secret = env.get("DIGEST_SECRET_KEY") or transport.get("secret_key", PLACEHOLDER_SECRET)

    raw_newsletters = data.get("newsletters", {"daily": {"title": site.name}})
    if not isinstance(raw_newsletters, Mapping) or not raw_newsletters:
        raise ConfigError(
            f"{_where(path)} defines no newsletter; add one such as [newsletters.daily]."
        )
    newsletters = {
        name: _with_sources_from(base, _newsletter(name, values, path))
        for name, values in raw_newsletters.items()
    }
    return Config(
        db_path=base / db_path,
        templates_dir=base / templates_dir,
        outbox_dir=base / outbox_dir,
        transport=kind,
        secret_key=secret,
        site=site,
        newsletters=newsletters,
        sendgrid=sendgrid,
        ingest=ingest,
        signup=signup,
        archive=archive,
        report=report,
        source_path=path,
        backup=backup,
    )


def is_place_timezone(name: str) -> bool:
    """Whether name is an IANA time zone of a place (not 'Factory', 'right/UTC' and such)."""
    return name in _place_timezones()


@cache
def _place_timezones() -> frozenset[str]:
    return frozenset(
        name
        for name in available_timezones()
        if name not in NOT_PLACES and not name.startswith(("posix/", "right/"))
    )


def _check_sender_address(key: str, address: str, path: Path | None) -> None:
    # No SMTPUTF8: neither transport can send from (or name) a non-ASCII mailbox yet.
    try:
        validate_email(
            address, check_deliverability=False, allow_smtputf8=False, test_environment=True
        )
    except EmailNotValidError as exc:
        raise ConfigError(
            f"{key} {address[:80]!r} in {_where(path)} is not an address: {exc}"
        ) from None


def _with_sources_from(base: Path, newsletter: NewsletterConfig) -> NewsletterConfig:
    """Source files named relative to the config file; URLs are left for ingest to check."""
    sources = tuple(
        source if "://" in source else str(base / source) for source in newsletter.sources
    )
    return replace(newsletter, sources=sources)


def is_placeholder_site(config: Config) -> bool:
    """Whether site.url is a name reserved for examples and tests (RFC 2606) or this machine."""
    host = (urlsplit(config.site.url).hostname or "").lower()
    return host in ("localhost", "127.0.0.1") or any(
        host == name or host.endswith("." + name)
        for name in ("example.com", "example.org", "example.net", "example", "test")
    )


def _weak_secret(config: Config) -> str | None:
    """What is wrong with the secret key, if anything."""
    if config.secret_key == PLACEHOLDER_SECRET:
        return "is still the shipped placeholder"
    if len(config.secret_key) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    return None


def _secret_error(config: Config, problem: str, purpose: str) -> ConfigError:
    return ConfigError(
        f"The secret key (DIGEST_SECRET_KEY) {problem}, so anyone could forge the readers' "
        f"unsubscribe and confirmation links; {purpose}. Set DIGEST_SECRET_KEY in "
        f"{_env_file_hint(config)} to a long random value: python3 -c 'import secrets; "
        "print(secrets.token_urlsafe(48))'."
    )


def _env_file_hint(config: Config) -> str:
    return str(config.source_path.parent / ENV_FILE) if config.source_path else "the environment"


def check_secret_for_sending(config: Config, transport: str) -> None:
    """Refuse a weak secret for mail that links to a real site, whatever the transport.

    SendGrid sends real mail, so it refuses the placeholder even for an example site.
    """
    problem = _weak_secret(config)
    if problem is None:
        return
    if not is_placeholder_site(config):
        raise _secret_error(config, problem, f"refusing to send mail for {config.site.url}")
    if transport == "sendgrid" and config.secret_key == PLACEHOLDER_SECRET:
        raise _secret_error(config, problem, "refusing to send real mail through SendGrid")


def check_secret_for_serving(config: Config, host: str | None) -> None:
    """Refuse a weak secret except for a try-out on this machine.

    `host` None means the app faces the world (gunicorn). Loopback alone is not enough:
    production sits on 127.0.0.1 behind a proxy, so the site must also be a placeholder one.
    """
    problem = _weak_secret(config)
    if problem is not None and (host not in LOCAL_HOSTS or not is_placeholder_site(config)):
        raise _secret_error(
            config,
            problem,
            f"refusing to serve on {host or 'a public address'} for {config.site.url} (only a "
            "try-out on 127.0.0.1 with an example or localhost site.url may use it)",
        )


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=value` lines (blank lines and `#` comments skipped), parsed, never run as shell.

    A value may be wrapped in one pair of matching quotes. A bad line is reported by its
    number alone: it may hold a secret, which must not reach a log.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the settings file {path}: {exc}.") from None
    values = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        key = key.strip()
        if not equals or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(
                f"{path}, line {number}: not a KEY=value line; write each setting as "
                "NAME=value (no 'export', no spaces around the name)."
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the config file (or `digest.toml` in the working directory, or the defaults).

    The `.env` file beside the config file fills in what the environment does not set. With
    `env` None (a real process) its values also go into `os.environ`, for what reads them
    there (SENDGRID_API_KEY).
    """
    if path is None:
        candidate = Path("digest.toml")
        path = candidate if candidate.exists() else None
    if path is None:
        return parse_config({}, None, os.environ if env is None else env)
    path = Path(path)
    settings = read_env_file(path.resolve().parent / ENV_FILE)
    if env is None:
        for key, value in settings.items():
            os.environ.setdefault(key, value)
        env = os.environ
    else:
        env = {**settings, **env}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"Config file {path} does not exist; pass --config with the right path "
            "or copy digest.toml from the project."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}. Fix that line.") from None
    return parse_config(data, path.resolve(), env)


def with_overrides(config: Config, **changes: Any) -> Config:
    """A copy of the config with some fields changed (used by the demo and tests)."""
    return replace(config, **changes)
