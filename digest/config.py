"""Load and check `digest.toml`: the site, the transport and each newsletter's settings."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from .errors import ConfigError

# The repository's own templates: the default when a config names none.
PROJECT_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
PLACEHOLDER_SECRET = "change-me-in-production"
TRANSPORTS = ("outbox", "sendgrid")


@dataclass(frozen=True)
class UtmSettings:
    """UTM parameters added to story links; off unless `enabled`."""

    enabled: bool = False
    source: str = "newsletter"
    medium: str = "email"
    campaign: str = "{newsletter}"


@dataclass(frozen=True)
class NewsletterConfig:
    """One newsletter: what it selects, how it is titled, when it is due."""

    name: str
    title: str = "Daily Digest"
    subject: str = "{{ newsletter.title }}: {{ top_stories[0].title if top_stories else 'today' }}"
    preheader: str = "{{ top_stories | map(attribute='title') | join(' · ') }}"
    schedule: str = "0 7 * * *"
    timezone: str = "UTC"
    grace_hours: float = 6.0
    window_hours: float = 24.0
    top_stories: int = 5
    recent_posts: int = 8
    per_category: int = 2
    half_life_hours: float = 12.0
    also_read: bool = True
    also_read_days: float = 7.0
    min_stories: int = 1
    sources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    asm_group_id: int | None = None
    utm: UtmSettings = field(default_factory=UtmSettings)


@dataclass(frozen=True)
class SiteConfig:
    """The publisher: shown in every email's header and footer."""

    name: str = "Example News"
    url: str = "https://news.example.com"
    postal_address: str = "1 Example Street, Springfield"
    from_email: str = "digest@news.example.com"
    from_name: str = "Example News"
    reply_to: str = ""


@dataclass(frozen=True)
class SendGridSettings:
    """SendGrid transport options; the API key only ever comes from the environment."""

    api_host: str = "https://api.sendgrid.com"
    batch_size: int = 1000
    concurrency: int = 2
    timeout_seconds: float = 30.0
    max_attempts: int = 5
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    retry_after_timeout: bool = False
    sandbox_mode: bool = False
    workers: str = "processes"


@dataclass(frozen=True)
class SignupSettings:
    """How many sign-ups the form takes (counted in the database, shared by every worker)."""

    per_client_per_hour: int = 20
    per_hour: int = 1000
    per_mailbox_per_day: int = 5
    # Reverse proxies in front of the app that add X-Forwarded-For: the client is the
    # address the farthest of them saw (0: the address that connected).
    proxies: int = 0


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
    signup: SignupSettings = field(default_factory=SignupSettings)
    source_path: Path | None = None

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


def _where(path: Path | None) -> str:
    return str(path) if path else "the built-in defaults"


def _build(cls: type, values: Mapping[str, Any], section: str, path: Path | None, **extra: Any):
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
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{section}.{key} in {_where(path)} must be true or false.")
        if isinstance(default, int | float) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{section}.{key} in {_where(path)} must be a number.")
            if isinstance(default, int) and not isinstance(value, int):
                raise ConfigError(f"{section}.{key} in {_where(path)} must be a whole number.")
            if value < 0:
                raise ConfigError(f"{section}.{key} in {_where(path)} must not be negative.")
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{section}.{key} in {_where(path)} must be a string.")
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
    nl: NewsletterConfig = _build(
        NewsletterConfig, values, f"newsletters.{name}", path, name=name, utm=utm
    )
    try:
        ZoneInfo(nl.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"newsletters.{name}.timezone {nl.timezone!r} in {_where(path)} is not an IANA "
            "time zone; use a name such as 'Europe/London' or 'UTC'."
        ) from None
    if not croniter.is_valid(nl.schedule):
        raise ConfigError(
            f"newsletters.{name}.schedule {nl.schedule!r} in {_where(path)} is not a cron "
            "expression; write it like '0 7 * * *' (07:00 daily) or '0 8 * * MON'."
        )
    if nl.top_stories < 1 or nl.per_category < 1 or nl.window_hours <= 0:
        raise ConfigError(
            f"newsletters.{name} in {_where(path)}: top_stories, per_category and "
            "window_hours must be at least 1."
        )
    if nl.half_life_hours <= 0:
        raise ConfigError(f"newsletters.{name}.half_life_hours in {_where(path)} must be > 0.")
    return nl


def parse_config(data: Mapping[str, Any], path: Path | None, env: Mapping[str, str]) -> Config:
    """Turn parsed TOML into a checked Config; relative paths are relative to the file."""
    base = path.parent if path else Path.cwd()
    data = dict(data)
    known_sections = {
        "site",
        "store",
        "templates",
        "transport",
        "sendgrid",
        "signup",
        "newsletters",
    }
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
    sendgrid = _build(SendGridSettings, data.get("sendgrid", {}), "sendgrid", path)
    if not 1 <= sendgrid.batch_size <= 1000:
        raise ConfigError(f"sendgrid.batch_size in {_where(path)} must be from 1 to 1000.")
    if not 1 <= sendgrid.concurrency <= 16:
        raise ConfigError(f"sendgrid.concurrency in {_where(path)} must be from 1 to 16.")
    if sendgrid.workers not in ("processes", "threads"):
        raise ConfigError(f'sendgrid.workers in {_where(path)} must be "processes" or "threads".')
    if sendgrid.max_attempts < 1:
        raise ConfigError(f"sendgrid.max_attempts in {_where(path)} must be at least 1.")
    signup = _build(SignupSettings, data.get("signup", {}), "signup", path)

    store = data.get("store", {})
    templates = data.get("templates", {})
    transport = data.get("transport", {})
    for section, table, keys in (
        ("store", store, {"path"}),
        ("templates", templates, {"path"}),
        ("transport", transport, {"kind", "outbox", "secret_key"}),
    ):
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
        name: _newsletter(name, values, path) for name, values in raw_newsletters.items()
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
        signup=signup,
        source_path=path,
    )


def is_placeholder_site(config: Config) -> bool:
    """Whether site.url is a name reserved for examples and tests (RFC 2606) or this machine."""
    host = (urlsplit(config.site.url).hostname or "").lower()
    return host in ("localhost", "127.0.0.1") or any(
        host == name or host.endswith("." + name)
        for name in ("example.com", "example.org", "example.net", "example", "test")
    )


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the config file (or `digest.toml` in the working directory, or the defaults)."""
    env = os.environ if env is None else env
    if path is None:
        candidate = Path("digest.toml")
        path = candidate if candidate.exists() else None
    if path is None:
        return parse_config({}, None, env)
    path = Path(path)
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
