"""A reader's personal data: everything stored about one address as JSON, and forgetting it.

Personal data is every row that names the reader: their `subscribers` row, and the rows of
every table with a `subscriber_id` column (subscriptions, deliveries, audit, and tables added
later, such as provider events), or else an `email` column, or else a `delivery_id` naming one
of their deliveries (the stories they clicked). Export and forget both find the tables that
way, so a new table of reader data is covered without changing this module.
"""

from __future__ import annotations

import contextlib
import glob
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlite_utils import Database

from ..addresses import sendable_recipient
from ..delivery.transports.outbox import eml_file_name
from ..errors import SubscriberError
from ..models import Subscriber
from ..store import write_transaction
from .audit import record
from .subscribers import check_email, find_subscriber, get_subscriber
from .suppression import suppress


def personal_tables(db: Database) -> list[tuple[str, str]]:
    """(table, column naming the reader) for every table but `subscribers` that holds readers."""
    found = []
    for table in db.tables:
        columns = set(table.columns_dict)
        if table.name == "subscribers":
            continue
        if "subscriber_id" in columns:
            found.append((table.name, "subscriber_id"))
        elif "email" in columns:
            found.append((table.name, "email"))
        elif "delivery_id" in columns:
            found.append((table.name, "delivery_id"))
    return found


def _reader_rows(table: str, column: str, subscriber: Subscriber) -> tuple[str, object]:
    """`FROM ... WHERE ...` selecting a table's rows about this reader, and its parameter."""
    if column == "subscriber_id":
        return f"FROM [{table}] WHERE subscriber_id = ?", subscriber.id
    if column == "delivery_id":
        return (
            f"FROM [{table}] WHERE delivery_id IN "
            "(SELECT id FROM deliveries WHERE subscriber_id = ?)",
            subscriber.id,
        )
    return f"FROM [{table}] WHERE [{column}] = ? COLLATE NOCASE", subscriber.email


def export_data(db: Database, email: str) -> dict[str, object]:
    """Everything stored about one reader: `profile`, then a list of rows per table."""
    subscriber = get_subscriber(db, email)
    data: dict[str, object] = {
        "profile": next(db.query("SELECT * FROM subscribers WHERE id = ?", [subscriber.id]))
    }
    for table, column in personal_tables(db):
        where, value = _reader_rows(table, column, subscriber)
        order = ", ".join(f"[{pk}]" for pk in db.table(table).pks)  # rowid, or a WITHOUT ROWID key
        rows = db.query(f"SELECT * {where} ORDER BY {order}", [value])
        data[table] = [{key: _plain(cell) for key, cell in row.items()} for row in rows]
    return data


def _plain(value: object) -> object:
    """A column's value as JSON holds it: a BLOB (an event's natural key) as hex text."""
    return value.hex() if isinstance(value, bytes) else value


def erase_reader(db: Database, subscriber: Subscriber) -> dict[str, int]:
    """Delete the reader's row and every row about them; returns the count per table."""
    tables = personal_tables(db)
    removed = dict.fromkeys((table for table, _ in tables), 0)
    # Rows reached through the reader's deliveries go before the deliveries themselves.
    for table, column in sorted(tables, key=lambda pair: pair[1] != "delivery_id"):
        where, value = _reader_rows(table, column, subscriber)
        removed[table] = db.execute(f"DELETE {where}", [value]).rowcount
    db.execute("DELETE FROM subscribers WHERE id = ?", [subscriber.id])
    return {"profile": 1, **removed}


@dataclass
class ForgetReport:
    address: str
    removed: dict[str, int] = field(default_factory=dict)
    outbox_files: int = 0

    def summary(self) -> str:
        if not self.removed:
            return (
                f"{self.address} was not on the list; its salted hash is now in the "
                "suppression list, so it will not be added"
            )
        counts = ", ".join(f"{table} {n}" for table, n in self.removed.items())
        return (
            f"forgot {self.address}: removed {counts}, outbox files {self.outbox_files}; "
            "only a salted hash stays, in the suppression list"
        )


# Erases an address (as stored and as sent) where this module cannot look, in the same
# transaction: the webhook's posts not processed yet (`feedback.events`); returns a count.
Eraser = Callable[[Database, set[str]], int]


def forget(
    db: Database,
    email: str,
    outbox_dir: Path | None = None,
    erasers: Mapping[str, Eraser] | None = None,
) -> ForgetReport:
    """Delete everything about a reader and keep only a salted hash so they are never re-added.

    Also deletes their `.eml` files from the outbox folder, when one is given, and calls each
    of `erasers` (named by what it erases) with the address's forms. The audit gets one row
    saying that someone was forgotten, with the counts and no address.
    """
    subscriber = find_subscriber(db, email)
    # Found as typed: a reader stored before the entry checks (`josé@...`) can be forgotten too.
    address = subscriber.email if subscriber else check_email(email)
    report = ForgetReport(address)
    with write_transaction(db):
        if subscriber is not None:
            report.address = subscriber.email
            report.removed = erase_reader(db, subscriber)
        for name, erase in (erasers or {}).items():
            if count := erase(db, _sent_forms(report.address)):
                report.removed[name] = count
        suppress(db, address, "forgotten")
        counts = ", ".join(f"{table} {n}" for table, n in report.removed.items())
        record(db, None, "forgotten", "cli", detail=counts or "not on the list")
    if outbox_dir is not None:
        # And a temp file a crash or a full disk left behind.
        names = {n for name in _eml_names(report.address) for n in (name, f".{name}.tmp")}
        for name in names:
            for path in Path(outbox_dir).glob(f"*/{glob.escape(name)}"):
                path.unlink()
                report.outbox_files += 1
    return report


def _sent_forms(address: str) -> set[str]:
    """An address as stored, and as sent (a Unicode domain in ASCII)."""
    forms = {address}
    with contextlib.suppress(SubscriberError):  # else never sent
        forms.add(sendable_recipient(address, "")[0])
    return forms


def _eml_names(address: str) -> set[str]:
    """The outbox file names of an address: as stored, and as sent."""
    return {eml_file_name(form) for form in _sent_forms(address)}
