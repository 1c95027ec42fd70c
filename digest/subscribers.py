"""The subscriber list: add, import from CSV, unsubscribe and list readers, checking every field."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from sqlite_utils import Database

from .clock import to_db, utcnow
from .errors import NotFoundError, SubscriberError
from .models import Subscriber
from .select import normalize_topics
from .store import SUBSCRIBER_STATUSES

SUPPRESSED = ("unsubscribed", "bounced", "complained")
CSV_COLUMNS = ("email", "name", "topics", "timezone")


def check_email(address: str) -> str:
    """The normalized address, or SubscriberError saying what is wrong with it."""
    try:
        return validate_email(address.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise SubscriberError(f"invalid address {address.strip()!r}: {exc}") from None


def check_timezone(name: str) -> str:
    name = name.strip() or "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SubscriberError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/London"
        ) from None
    return name


def topics_text(topics: Iterable[str]) -> str:
    """Topics as stored: the normalized names joined by ';' (empty means every topic)."""
    return ";".join(normalize_topics(topics))


def _subscriber(row: dict) -> Subscriber:
    return Subscriber(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        topics=tuple(t for t in row["topics"].split(";") if t),
        timezone=row["timezone"],
        status=row["status"],
    )


def find_subscriber(db: Database, email: str) -> Subscriber | None:
    row = next(db.query("SELECT * FROM subscribers WHERE email = ?", [email.strip()]), None)
    return _subscriber(row) if row else None


def get_subscriber(db: Database, email: str) -> Subscriber:
    found = find_subscriber(db, email)
    if found is None:
        raise NotFoundError(
            f"No subscriber {email!r}; `digest subscribers list` shows who is on the list."
        )
    return found


def add_subscriber(
    db: Database,
    email: str,
    name: str = "",
    topics: Iterable[str] = (),
    timezone: str = "UTC",
    status: str = "active",
) -> Subscriber:
    """Add one reader; an address already on the list (any letter case) is an error."""
    address = check_email(email)
    if status not in SUBSCRIBER_STATUSES:
        raise SubscriberError(f"status {status!r} is not one of {', '.join(SUBSCRIBER_STATUSES)}")
    if find_subscriber(db, address):
        raise SubscriberError(f"{address} is already on the list")
    now = to_db(utcnow())
    db.execute(
        """INSERT INTO subscribers (email, name, topics, timezone, status, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?)""",
        [address, name.strip(), topics_text(topics), check_timezone(timezone), status, now, now],
    )
    return get_subscriber(db, address)


def set_status(db: Database, email: str, status: str) -> Subscriber:
    subscriber = get_subscriber(db, email)
    db.execute(
        "UPDATE subscribers SET status = ?, updated_at = ? WHERE id = ?",
        [status, to_db(utcnow()), subscriber.id],
    )
    return get_subscriber(db, email)


def unsubscribe(db: Database, email: str) -> Subscriber:
    return set_status(db, email, "unsubscribed")


def list_subscribers(
    db: Database, status: str | None = None, topic: str | None = None
) -> Iterator[Subscriber]:
    clauses, params = [], []
    if status:
        clauses.append("status = ?")
        params.append(status)
    if topic:
        clauses.append("(';' || topics || ';') LIKE ?")
        params.append(f"%;{topic.strip().lower()};%")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    for row in db.query(f"SELECT * FROM subscribers {where} ORDER BY id", params):
        yield _subscriber(row)


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    suppressed: list[str] = field(default_factory=list)
    bad_rows: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.added} added", f"{self.updated} updated", f"{self.unchanged} unchanged"]
        if self.suppressed:
            parts.append(f"{len(self.suppressed)} suppressed (left as they are)")
        parts.append(f"{len(self.bad_rows)} bad row{'' if len(self.bad_rows) == 1 else 's'}")
        return "imported: " + ", ".join(parts)


def import_csv(db: Database, path: str | Path) -> ImportReport:
    """Import readers from a CSV with a header row (email, name, topics, timezone).

    A bad row is reported with its line number and reason and the good rows still go in.
    A reader already on the list gets the new name, topics and time zone, but never a new
    status: an unsubscribed, bounced or complained address stays so.
    """
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise SubscriberError(f"Cannot read {path}: {exc.strerror}; check the path.") from None
    report = ImportReport()
    seen: dict[str, int] = {}
    now = to_db(utcnow())
    with handle, db.atomic():
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "email" not in [f.strip().lower() for f in reader.fieldnames]:
            raise SubscriberError(
                f"{path} has no 'email' column in its header row; the columns are: "
                + ", ".join(CSV_COLUMNS)
            )
        for row in reader:
            line = reader.line_num
            row = {(k or "").strip().lower(): (v or "") for k, v in row.items() if k}
            try:
                email = check_email(row.get("email", ""))
                timezone = check_timezone(row.get("timezone", ""))
            except SubscriberError as exc:
                report.bad_rows.append((line, str(exc)))
                continue
            key = email.lower()
            if key in seen:
                report.bad_rows.append((line, f"duplicate of line {seen[key]} ({email})"))
                continue
            seen[key] = line
            values = {
                "name": row.get("name", "").strip(),
                "topics": topics_text(row.get("topics", "").split(";")),
                "timezone": timezone,
            }
            existing = find_subscriber(db, email)
            if existing is None:
                db.execute(
                    """INSERT INTO subscribers
                       (email, name, topics, timezone, status, created_at, updated_at)
                       VALUES (?, ?, ?, ?, 'active', ?, ?)""",
                    [email, values["name"], values["topics"], timezone, now, now],
                )
                report.added += 1
                continue
            if existing.status in SUPPRESSED:
                report.suppressed.append(f"line {line}: {email} is {existing.status}")
            current = {
                "name": existing.name,
                "topics": ";".join(existing.topics),
                "timezone": existing.timezone,
            }
            if current == values:
                report.unchanged += 1
                continue
            db.execute(
                """UPDATE subscribers SET name = :name, topics = :topics, timezone = :timezone,
                   updated_at = :now WHERE id = :id""",
                {**values, "now": now, "id": existing.id},
            )
            report.updated += 1
    return report
