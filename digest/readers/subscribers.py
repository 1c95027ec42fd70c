"""The subscriber list: add, import, unsubscribe, list, count and export readers."""

from __future__ import annotations

import csv
import hmac
import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlite_utils import Database

from ..addresses import CONTROL_CHARACTERS, check_email, check_name, lookup_form, shown
from ..clock import to_db, utcnow
from ..edition.select import normalize_topics
from ..errors import NotFoundError, SubscriberError
from ..invocation import digest_command
from ..models import Subscriber
from ..store import write_transaction
from ..tokens import TokenClaim
from ..zones import check_timezone
from .audit import record
from .subscriptions import (
    ADDRESS_WIDE,
    SubscriberStatus,
    SubscriptionStatus,
    is_status,
    roll_up,
    set_subscription,
    subscriptions_of,
)
from .suppression import is_suppressed

SUPPRESSED = ("unsubscribed", "bounced", "complained")
IMPORT_CHUNK_ROWS = 1000
CSV_COLUMNS = ("email", "name", "topics", "timezone")
EXPORT_COLUMNS = (*CSV_COLUMNS, "status", "newsletters", "created_at", "updated_at")
# The newsletter of the built-in default config; the CLI always passes the config's choice.
DEFAULT_NEWSLETTER = "daily"
# Spreadsheets run a cell that starts with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_GUARDED_STARTS = (*_FORMULA_STARTS, "'")


def check_topic_names(topics: Iterable[str]) -> tuple[str, ...]:
    """The topics normalized, or SubscriberError naming one that holds control characters."""
    chosen = normalize_topics(topics)
    for topic in chosen:
        if CONTROL_CHARACTERS.search(topic):
            raise SubscriberError(f"topic {shown(topic)} holds control characters; remove them")
    return chosen


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
        link_nonce=row["link_nonce"],
        legacy_links=bool(row["legacy_links"]),
    )


def find_subscriber(db: Database, email: str) -> Subscriber | None:
    """The reader with this address, however it is typed (`ANA@Bücher.DE` finds `ana@bücher.de`)."""
    row = next(db.query("SELECT * FROM subscribers WHERE email = ?", [lookup_form(email)]), None)
    return _subscriber(row) if row else None


def subscriber_by_id(db: Database, subscriber_id: int) -> Subscriber | None:
    row = next(db.query("SELECT * FROM subscribers WHERE id = ?", [subscriber_id]), None)
    return _subscriber(row) if row else None


def subscriber_for_link(db: Database, claim: TokenClaim) -> Subscriber | None:
    """The reader a signed link names, or None when it names no one any more.

    A link names its reader for good: its nonce must be theirs, or, for a link of the old
    format (no nonce), the reader must have been on the list before nonces existed (ids
    given out since never answer to one).
    """
    subscriber = subscriber_by_id(db, claim.subscriber_id)
    if subscriber is None:
        return None
    if claim.nonce is None:
        return subscriber if subscriber.legacy_links else None
    return subscriber if hmac.compare_digest(claim.nonce, subscriber.link_nonce) else None


def get_subscriber(db: Database, email: str) -> Subscriber:
    found = find_subscriber(db, email)
    if found is None:
        raise NotFoundError(
            f"No subscriber {email!r}; `{digest_command()} subscribers list` shows who is on "
            "the list."
        )
    return found


def create_subscriber(
    db: Database,
    address: str,
    *,
    newsletter: str,
    source: str,
    name: str = "",
    topics: Iterable[str] = (),
    timezone: str = "UTC",
    status: str = "active",
) -> int:
    """Insert a new reader (a checked address not yet on the list) and their first subscription.

    Bounced or complained belong to the address; the subscription is then kept `active`.
    """
    now = to_db(utcnow())
    with write_transaction(db):
        cursor = db.execute(
            """INSERT INTO subscribers
               (email, name, topics, timezone, status, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            [address, name.strip(), topics_text(topics), timezone, status, now, now],
        )
        subscriber_id = cursor.lastrowid
        assert subscriber_id is not None  # an INSERT always sets it
        record(db, subscriber_id, "address", source, new_status=status)
        first = status if is_status(status, SubscriptionStatus) else SubscriptionStatus.ACTIVE
        set_subscription(db, subscriber_id, newsletter, first, source)
    return subscriber_id


def refuse_forgotten(db: Database, address: str) -> None:
    if is_suppressed(db, address):
        raise SubscriberError(
            f"{address} was forgotten at the reader's request and is on the suppression list; "
            "it is never added again (only the reader's own request may change that)."
        )


def add_subscriber(
    db: Database,
    email: str,
    name: str = "",
    topics: Iterable[str] = (),
    timezone: str = "UTC",
    status: str = "active",
    *,
    newsletter: str = DEFAULT_NEWSLETTER,
    source: str = "cli",
) -> Subscriber:
    """Add one reader, subscribed to `newsletter`; an address already on the list is an error.

    The address, name, topics and time zone are checked as for every entry point (`addresses`).
    """
    address = check_email(email)
    name = check_name(name)
    topics = check_topic_names(topics)
    if not is_status(status, SubscriberStatus):
        raise SubscriberError(f"status {status!r} is not one of {', '.join(SubscriberStatus)}")
    refuse_forgotten(db, address)
    if find_subscriber(db, address):
        raise SubscriberError(
            f"{address} is already on the list; `{digest_command()} subscribers list` shows "
            "its status."
        )
    create_subscriber(
        db,
        address,
        newsletter=newsletter,
        source=source,
        name=name,
        topics=topics,
        timezone=check_timezone(timezone),
        status=status,
    )
    return get_subscriber(db, address)


def unsubscribe(
    db: Database, email: str, newsletter: str | None = None, source: str = "cli"
) -> Subscriber:
    """Unsubscribe a reader from one newsletter, or from every one when none is named."""
    subscriber = get_subscriber(db, email)
    with write_transaction(db):
        names = [newsletter] if newsletter else list(subscriptions_of(db, subscriber.id))
        for name in names:
            set_subscription(db, subscriber.id, name, "unsubscribed", source)
        roll_up(db, subscriber.id, source)
    return get_subscriber(db, email)


def _with_status(newsletter: str | None) -> tuple[str, dict]:
    """Readers with the status that counts for `newsletter` (the address's when None).

    For a newsletter, readers without a subscription to it are left out, and a bounced or
    complained address shows as such whatever its subscription says.
    """
    if newsletter is None:
        return "SELECT * FROM subscribers", {}
    return (
        """SELECT s.id, s.email, s.name, s.topics, s.timezone, s.created_at, s.updated_at,
                  s.link_nonce, s.legacy_links,
                  CASE WHEN s.status IN ('bounced', 'complained') THEN s.status
                       ELSE sub.status END AS status
           FROM subscribers s JOIN subscriptions sub
             ON sub.subscriber_id = s.id AND sub.newsletter = :newsletter""",
        {"newsletter": newsletter},
    )


def list_subscribers(
    db: Database,
    status: str | None = None,
    topic: str | None = None,
    newsletter: str | None = None,
) -> Iterator[Subscriber]:
    """Readers in id order; with `newsletter`, its subscribers with their status for it."""
    readers, params = _with_status(newsletter)
    clauses = []
    if status:
        clauses.append("status = :status")
        params["status"] = status
    if topic:
        clauses.append("(';' || topics || ';') LIKE :topic")
        params["topic"] = f"%;{topic.strip().lower()};%"
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    for row in db.query(f"SELECT * FROM ({readers}) {where} ORDER BY id", params):
        yield _subscriber(row)


def count_by_status(db: Database, newsletter: str | None = None) -> dict[str, int]:
    """How many readers have each status (every status listed, zeros too)."""
    readers, params = _with_status(newsletter)
    counts: dict[str, int] = {status: 0 for status in SubscriberStatus}
    for row in db.query(f"SELECT status, COUNT(*) AS n FROM ({readers}) GROUP BY status", params):
        counts[row["status"]] = row["n"]
    return counts


def _spreadsheet_safe(value: str) -> str:
    """A leading ' keeps a spreadsheet from running a cell as a formula (names come from a web
    form, and an address may start with `=`); a value starting with ' gets one more, so that
    `_unguarded` reads every value back as it was."""
    return f"'{value}" if value.startswith(_GUARDED_STARTS) else value


def _unguarded(value: str) -> str:
    """The value `_spreadsheet_safe` guarded, as it was; any other value as it is."""
    if value.startswith("'") and value[1:].startswith(_GUARDED_STARTS):
        return value[1:]
    return value


def export_csv(db: Database, path: str | Path) -> int:
    """Write the whole list (every status) as CSV with EXPORT_COLUMNS; returns the row count.

    The file is written whole or not at all, and can be imported again as it is.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.tmp")
    rows = db.query(
        """SELECT s.*, COALESCE(group_concat(sub.newsletter || ':' || sub.status, ';'), '')
                  AS newsletters
           FROM subscribers s LEFT JOIN subscriptions sub ON sub.subscriber_id = s.id
           GROUP BY s.id ORDER BY s.id"""
    )
    count = 0
    try:
        with partial.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(EXPORT_COLUMNS)
            for row in rows:
                row["newsletters"] = ";".join(sorted(filter(None, row["newsletters"].split(";"))))
                writer.writerow([_spreadsheet_safe(str(row[column])) for column in EXPORT_COLUMNS])
                count += 1
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise SubscriberError(f"Cannot write {path}: {exc.strerror}; check the path.") from None
    return count


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


def _suppressed_reason(existing: Subscriber, subscription: str | None, newsletter: str) -> str:
    """Why an import leaves this reader as they are for `newsletter`; empty when it does not."""
    if existing.status in SUPPRESSED:
        return f"is {existing.status}"
    if subscription == "unsubscribed":
        return f"is unsubscribed from {newsletter}"
    return ""


def import_csv(
    db: Database, path: str | Path, newsletter: str = DEFAULT_NEWSLETTER
) -> ImportReport:
    """Import readers from a CSV with a header row (email, name, topics, timezone).

    New addresses are added as active subscribers of `newsletter`, or, for a row that carries
    `status` and `newsletters` (a file from `export_csv`), with that status and those
    subscriptions only: an export imports back as it was. A bad row is reported with its line
    number and reason and the good rows still go in. A reader already on the list gets the
    new name, topics and time zone, and a subscription to `newsletter` if they had none (and
    the row names no newsletters), but never a new status: an unsubscribed, bounced or
    complained reader stays so, and a forgotten address is never added again. Those are
    reported in `suppressed`.
    """
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise SubscriberError(f"Cannot read {path}: {exc.strerror}; check the path.") from None
    report = ImportReport()
    seen: dict[str, int] = {}
    now = to_db(utcnow())
    with handle:
        reader = csv.DictReader(handle)
        numbered = ((reader.line_num, row) for row in reader)
        try:
            if not reader.fieldnames or "email" not in [
                f.strip().lower() for f in reader.fieldnames
            ]:
                raise SubscriberError(
                    f"{path} has no 'email' column in its header row; the columns are: "
                    + ", ".join(CSV_COLUMNS)
                )
            # A transaction per chunk: the web app's unsubscribes must not wait for a big file.
            while chunk := list(itertools.islice(numbered, IMPORT_CHUNK_ROWS)):
                with write_transaction(db):
                    for line, row in chunk:
                        _import_row(db, row, line, newsletter, now, seen, report)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise SubscriberError(
                f"{path} near line {reader.line_num + 1}: {exc}; save the file as UTF-8 CSV and "
                "import it again (rows before it went in; they will show as unchanged)."
            ) from None
    return report


def _exported_status(row: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The address status and subscriptions a row carries (`status` and `newsletters`, as
    `export_csv` writes them): ("active", {}) for a row without them."""
    status = row.get("status", "").strip()
    text = row.get("newsletters", "").strip()
    if status and not is_status(status, SubscriberStatus):
        raise SubscriberError(f"status {shown(status)} is not one of {', '.join(SubscriberStatus)}")
    carried: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, _, state = item.rpartition(":")
        if not name or not is_status(state, SubscriptionStatus):
            raise SubscriberError(
                f"newsletters {shown(text)}: write each as newsletter:status, the status one "
                f"of {', '.join(SubscriptionStatus)}"
            )
        carried[name] = state
    if carried and status not in ADDRESS_WIDE:
        # An address that is not bounced or complained has the status of its subscriptions.
        follows = next((s for s in ("active", "pending") if s in carried.values()), "unsubscribed")
        if status and status != follows:
            raise SubscriberError(
                f"status {status} disagrees with newsletters {shown(text)}, which make it "
                f"{follows}; correct one of them"
            )
        status = follows
    return status or "active", carried


def _import_row(
    db: Database,
    row: dict,
    line: int,
    newsletter: str,
    now: str,
    seen: dict[str, int],
    report: ImportReport,
) -> None:
    """One CSV row of `import_csv`, counted in `report`."""
    row = {(k or "").strip().lower(): (v or "") for k, v in row.items() if k}
    row = {column: _unguarded(value) for column, value in row.items()}
    try:
        email = check_email(row.get("email", ""))
        name = check_name(row.get("name", ""))
        topics = topics_text(check_topic_names(row.get("topics", "").split(";")))
        timezone = check_timezone(row.get("timezone", ""))
        status, carried = _exported_status(row)
    except SubscriberError as exc:
        report.bad_rows.append((line, str(exc)))
        return
    key = email.lower()
    if key in seen:
        report.bad_rows.append((line, f"duplicate of line {seen[key]} ({email})"))
        return
    seen[key] = line
    if is_suppressed(db, email):
        report.suppressed.append(f"line {line}: {email} was forgotten at their request")
        return
    values = {"name": name, "topics": topics, "timezone": timezone}
    existing = find_subscriber(db, email)
    if existing is None:
        subscriber_id = create_subscriber(
            db,
            email,
            newsletter=next(iter(carried), newsletter),
            source="import",
            name=values["name"],
            topics=values["topics"].split(";"),
            timezone=timezone,
            status=status,
        )
        for name, state in carried.items():
            set_subscription(db, subscriber_id, name, state, "import")
        report.added += 1
        return
    subscription = subscriptions_of(db, existing.id).get(newsletter)
    if reason := _suppressed_reason(existing, subscription, newsletter):
        report.suppressed.append(f"line {line}: {email} {reason}")
    # A row with its own newsletters (an export) never joins another one.
    joins = not carried and subscription is None and existing.status in ("active", "pending")
    if joins:
        set_subscription(db, existing.id, newsletter, existing.status, "import")
    current = {
        "name": existing.name,
        "topics": ";".join(existing.topics),
        "timezone": existing.timezone,
    }
    changed = [k for k in values if values[k] != current[k]]
    if changed:
        db.execute(
            """UPDATE subscribers SET name = :name, topics = :topics,
               timezone = :timezone, updated_at = :now WHERE id = :id""",
            {**values, "now": now, "id": existing.id},
        )
        record(db, existing.id, "profile", "import", detail=", ".join(changed))
    if changed or joins:
        report.updated += 1
    else:
        report.unchanged += 1


def update_profile(
    db: Database,
    subscriber: Subscriber,
    source: str,
    *,
    topics: Iterable[str] | None = None,
    timezone: str | None = None,
) -> Subscriber:
    """Change a reader's topics and/or time zone; the change (field names only) is audited."""
    wanted = {}
    if topics is not None:
        wanted["topics"] = topics_text(topics)
    if timezone is not None:
        wanted["timezone"] = check_timezone(timezone)
    current = {"topics": ";".join(subscriber.topics), "timezone": subscriber.timezone}
    changes = {k: v for k, v in wanted.items() if current[k] != v}
    if not changes:
        return subscriber
    with write_transaction(db):
        assignments = ", ".join(f"{k} = :{k}" for k in changes)
        db.execute(
            f"UPDATE subscribers SET {assignments}, updated_at = :now WHERE id = :id",
            {**changes, "now": to_db(utcnow()), "id": subscriber.id},
        )
        record(db, subscriber.id, "profile", source, detail=", ".join(changes))
    return replace(
        subscriber,
        topics=tuple(t for t in changes.get("topics", current["topics"]).split(";") if t),
        timezone=changes.get("timezone", subscriber.timezone),
    )
