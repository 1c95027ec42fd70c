"""The SQLite store: opening it, its ordered migrations, and the write transaction."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from .clock import to_db, utcnow
from .errors import StoreError

# Where a change to a reader came from ("link": the confirmation link in an email).
AUDIT_SOURCES = ("form", "link", "one-click", "cli", "import", "webhook", "sunset")

migrations = Migrations("digest")


@migrations()
def m001_initial(db: Database) -> None:
    # The values of `SubscriberStatus` when this migration was written: a migration is history.
    statuses = "'active', 'pending', 'unsubscribed', 'bounced', 'complained'"
    # The values of `DeliveryStatus` when this migration was written.
    deliveries = "'queued', 'sending', 'sent', 'failed', 'skipped'"
    db.executescript(
        f"""
        CREATE TABLE stories (
            id INTEGER PRIMARY KEY,
            url TEXT NOT NULL UNIQUE,
            guid TEXT,
            title TEXT NOT NULL,
            summary TEXT NOT NULL DEFAULT '',
            author TEXT NOT NULL DEFAULT '',
            category TEXT NOT NULL DEFAULT '',
            image_url TEXT NOT NULL DEFAULT '',
            published_at TEXT NOT NULL,
            score REAL NOT NULL DEFAULT 0,
            pinned INTEGER NOT NULL DEFAULT 0,
            editor_locked INTEGER NOT NULL DEFAULT 0,
            source TEXT NOT NULL DEFAULT '',
            ingested_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX stories_published ON stories (published_at);
        CREATE INDEX stories_guid ON stories (guid);

        CREATE TABLE subscribers (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL UNIQUE COLLATE NOCASE,
            name TEXT NOT NULL DEFAULT '',
            topics TEXT NOT NULL DEFAULT '',
            timezone TEXT NOT NULL DEFAULT 'UTC',
            status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ({statuses})),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX subscribers_audience ON subscribers (status, topics, timezone);

        CREATE TABLE editions (
            id INTEGER PRIMARY KEY,
            newsletter TEXT NOT NULL,
            slot_at TEXT NOT NULL,
            variant TEXT NOT NULL,
            topics TEXT NOT NULL DEFAULT '',
            timezone TEXT,
            subject TEXT NOT NULL,
            preheader TEXT NOT NULL DEFAULT '',
            html TEXT NOT NULL,
            text TEXT NOT NULL,
            story_ids TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (newsletter, slot_at, variant)
        );
        CREATE INDEX editions_variant ON editions (newsletter, variant, slot_at);

        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            edition_id INTEGER NOT NULL REFERENCES editions (id),
            subscriber_id INTEGER NOT NULL,
            email TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ({deliveries})),
            batch_key TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            provider_id TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            sent_at TEXT,
            UNIQUE (edition_id, subscriber_id)
        );
        CREATE INDEX deliveries_queue ON deliveries (edition_id, status, id);
        CREATE INDEX deliveries_batch ON deliveries (batch_key);
        CREATE INDEX deliveries_subscriber ON deliveries (subscriber_id);

        CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            expires_at TEXT NOT NULL
        );
        """
    )


@migrations()
def m002_subscriptions(db: Database) -> None:
    """Per-newsletter subscriptions, the audit trail and the suppression list.

    Before this, every active reader got every newsletter. The migration cannot read the
    config, so it subscribes every reader (with their current status) to each newsletter the
    database has built editions of, or to `daily`, the shipped default, if it has built none.
    Bounced and complained stay on the address; their subscriptions are kept as `active`.
    """
    # The values of `SubscriptionStatus` when this migration was written.
    statuses = "'active', 'pending', 'unsubscribed'"
    sources = "'form', 'link', 'one-click', 'cli', 'import', 'webhook'"
    for statement in (
        f"""CREATE TABLE subscriptions (
            id INTEGER PRIMARY KEY,
            subscriber_id INTEGER NOT NULL REFERENCES subscribers (id),
            newsletter TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ({statuses})),
            confirmation_sent_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (subscriber_id, newsletter)
        )""",
        "CREATE INDEX subscriptions_audience ON subscriptions (newsletter, status)",
        f"""CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            subscriber_id INTEGER,
            newsletter TEXT,
            action TEXT NOT NULL,
            old_status TEXT,
            new_status TEXT,
            source TEXT NOT NULL CHECK (source IN ({sources})),
            detail TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX audit_subscriber ON audit (subscriber_id, id)",
        """CREATE TABLE suppressions (
            address_hash TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE suppression_salt (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            salt TEXT NOT NULL
        )""",
    ):
        db.execute(statement)
    db.execute("INSERT INTO suppression_salt (id, salt) VALUES (1, ?)", [secrets.token_hex(32)])
    db.execute(
        """INSERT INTO subscriptions (subscriber_id, newsletter, status, created_at, updated_at)
           SELECT s.id, n.newsletter,
                  CASE WHEN s.status IN ('bounced', 'complained') THEN 'active' ELSE s.status END,
                  s.created_at, ?
           FROM subscribers s CROSS JOIN (
               SELECT DISTINCT newsletter FROM editions
               UNION SELECT 'daily' WHERE NOT EXISTS (SELECT 1 FROM editions)
           ) n""",
        [to_db(utcnow())],
    )


@migrations()
def m003_slots(db: Database) -> None:
    """What `digest run` did: each newsletter time-zone slot's outcome, and each run."""
    for statement in (
        """CREATE TABLE slots (
            id INTEGER PRIMARY KEY,
            newsletter TEXT NOT NULL,
            timezone TEXT NOT NULL,
            slot_at TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('sent', 'missed', 'skipped', 'failed')),
            note TEXT NOT NULL DEFAULT '',
            editions INTEGER NOT NULL DEFAULT 0,
            sent INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            skipped INTEGER NOT NULL DEFAULT 0,
            unknown INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 1,
            run_at TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (newsletter, timezone, slot_at)
        )""",
        "CREATE INDEX slots_recent ON slots (newsletter, slot_at)",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            run_at TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            actions INTEGER NOT NULL,
            failed INTEGER NOT NULL,
            summary TEXT NOT NULL
        )""",
    ):
        db.execute(statement)


@migrations()
def m004_fast_deliveries(db: Database) -> None:
    """Reshape `deliveries` for the send path, as measured with benchmarks/send.py.

    The status CHECK constraint doubled the cost of every insert and status change (the
    ledger module is its only writer and keeps to `DeliveryStatus`); only queued rows are
    indexed for the queue, so a claimed row leaves that index once; a batch is found by
    its id range; readers changed since an audience was frozen are found by `updated_at`.
    """
    for statement in (
        """CREATE TABLE deliveries_new (
            id INTEGER PRIMARY KEY,
            edition_id INTEGER NOT NULL REFERENCES editions (id),
            subscriber_id INTEGER NOT NULL,
            email TEXT NOT NULL,
            status TEXT NOT NULL,
            batch_key TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            provider_id TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            sent_at TEXT,
            UNIQUE (edition_id, subscriber_id)
        )""",
        "INSERT INTO deliveries_new SELECT * FROM deliveries",
        "DROP TABLE deliveries",
        "ALTER TABLE deliveries_new RENAME TO deliveries",
        "CREATE INDEX deliveries_queue ON deliveries (edition_id, id) WHERE status = 'queued'",
        "CREATE INDEX deliveries_subscriber ON deliveries (subscriber_id)",
        "CREATE INDEX subscribers_changed ON subscribers (updated_at)",
        "CREATE INDEX subscriptions_changed ON subscriptions (updated_at)",
    ):
        db.execute(statement)


@migrations()
def m005_audience_by_zone(db: Database) -> None:
    """Find a slot's readers (one time zone) and its topic sets without visiting every reader."""
    db.execute("CREATE INDEX subscribers_zone ON subscribers (status, timezone, topics)")


@migrations()
def m006_delivery_names(db: Database) -> None:
    """Each delivery keeps its reader's name, as it keeps their address: a batch is read from
    the ledger alone, not joined to a million scattered subscriber rows (benchmarks/send.py)."""
    db.execute("ALTER TABLE deliveries ADD COLUMN name TEXT")


@migrations()
def m007_reader_links(db: Database) -> None:
    """Subscriber ids are never reused, and every reader gets a random nonce for their links.

    Before this, an id freed by `forget` went to the next new reader, and links were signed
    over the id alone: a forgotten reader's old link reached a stranger. `subscribers` is
    rebuilt with AUTOINCREMENT (rows kept), its sequence starting above every id any table
    still names. Links now sign `<id>.<nonce>.<newsletter>` and are checked against the
    reader's `link_nonce` (random, the column's default for every row); links of the old
    format, already in sent mail, keep working only for the readers who exist now
    (`legacy_links` = 1), never for one added later.
    Subscriptions get `confirm_code`: the one confirmation link of a pending subscription
    that still works.
    """
    # The values of `SubscriberStatus` when this migration was written: a migration is history.
    statuses = "'active', 'pending', 'unsubscribed', 'bounced', 'complained'"
    named = ["SELECT MAX(id) FROM subscribers"] + [
        f"SELECT MAX(subscriber_id) FROM [{table}]"
        for table in db.table_names()
        if "subscriber_id" in db[table].columns_dict
    ]
    highest = max((db.execute(q).fetchone()[0] or 0 for q in named), default=0)
    for statement in (
        f"""CREATE TABLE subscribers_new (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            email TEXT NOT NULL UNIQUE COLLATE NOCASE,
            name TEXT NOT NULL DEFAULT '',
            topics TEXT NOT NULL DEFAULT '',
            timezone TEXT NOT NULL DEFAULT 'UTC',
            status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ({statuses})),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            link_nonce TEXT NOT NULL DEFAULT (lower(hex(randomblob(8)))),
            legacy_links INTEGER NOT NULL DEFAULT 0
        )""",
        """INSERT INTO subscribers_new
               (id, email, name, topics, timezone, status, created_at, updated_at, legacy_links)
           SELECT id, email, name, topics, timezone, status, created_at, updated_at, 1
           FROM subscribers""",
        "DROP TABLE subscribers",
        "ALTER TABLE subscribers_new RENAME TO subscribers",
        "CREATE INDEX subscribers_audience ON subscribers (status, topics, timezone)",
        "CREATE INDEX subscribers_changed ON subscribers (updated_at)",
        # m005_audience_by_zone's index, gone with the old table.
        "CREATE INDEX subscribers_zone ON subscribers (status, timezone, topics)",
        # Copied when queued, as the name is: a batch's links are made from the ledger alone.
        "ALTER TABLE deliveries ADD COLUMN link_nonce TEXT",
        "DELETE FROM sqlite_sequence WHERE name = 'subscribers'",
        f"INSERT INTO sqlite_sequence (name, seq) VALUES ('subscribers', {int(highest)})",
        "ALTER TABLE subscriptions ADD COLUMN confirm_code TEXT",
    ):
        db.execute(statement)


@migrations()
def m007_signup_queue(db: Database) -> None:
    """The sign-up form's queue and its flood counts.

    The form only checks its fields and queues the request (`signup_requests`), the same
    work whatever the address's state; the requests are handled after the answer has gone.
    `signup_attempts` counts recent sign-ups per client and per mailbox (a salted hash,
    never the address), so that every web worker shares the limits; rows older than a
    day are dropped.
    """
    for statement in (
        """CREATE TABLE signup_requests (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            topics TEXT NOT NULL DEFAULT '',
            timezone TEXT NOT NULL,
            newsletter TEXT NOT NULL,
            created_at TEXT NOT NULL,
            claimed_at TEXT
        )""",
        """CREATE TABLE signup_attempts (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            client TEXT NOT NULL,
            mailbox_hash TEXT NOT NULL
        )""",
        "CREATE INDEX signup_attempts_at ON signup_attempts (at)",
        "CREATE INDEX signup_attempts_client ON signup_attempts (client, at)",
        "CREATE INDEX signup_attempts_mailbox ON signup_attempts (mailbox_hash, at)",
        # Pending sign-ups are few among a million subscriptions: expiring them reads these.
        """CREATE INDEX subscriptions_pending ON subscriptions (confirmation_sent_at)
           WHERE status = 'pending'""",
    ):
        db.execute(statement)


@migrations()
def m008_events(db: Database) -> None:
    """What SendGrid's Event Webhook tells us: the raw posts, each event once, and per delivery
    its furthest delivery state and its engagement (kept apart).

    `webhook_posts` holds each verified body as received until it is processed (then only its
    counts stay); `events` is deduplicated on SendGrid's id and on a natural key. The partial
    index on `audit` finds the unsubscribes that follow an edition without reading the whole
    audit trail.
    """
    for statement in (
        """CREATE TABLE webhook_posts (
            id INTEGER PRIMARY KEY,
            received_at TEXT NOT NULL,
            headers TEXT NOT NULL,
            body BLOB,
            size INTEGER NOT NULL,
            processed_at TEXT,
            events INTEGER NOT NULL DEFAULT 0,
            new_events INTEGER NOT NULL DEFAULT 0,
            note TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX webhook_posts_pending ON webhook_posts (id) WHERE processed_at IS NULL",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            post_id INTEGER NOT NULL,
            sg_event_id TEXT,
            natural_key BLOB NOT NULL UNIQUE,
            event TEXT NOT NULL,
            bounce_type TEXT,
            occurred_at INTEGER NOT NULL,
            edition_id INTEGER,
            delivery_id INTEGER,
            subscriber_id INTEGER,
            batch_key TEXT,
            message_id TEXT,
            url TEXT,
            story_id INTEGER,
            machine_open INTEGER NOT NULL DEFAULT 0,
            detail TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE UNIQUE INDEX events_sg_event_id ON events (sg_event_id)",
        "CREATE INDEX events_edition ON events (edition_id, event)",
        "CREATE INDEX events_subscriber ON events (subscriber_id)",
        """CREATE TABLE delivery_states (
            delivery_id INTEGER PRIMARY KEY,
            edition_id INTEGER NOT NULL,
            subscriber_id INTEGER,
            state TEXT NOT NULL,
            rank INTEGER NOT NULL,
            occurred_at INTEGER NOT NULL
        )""",
        "CREATE INDEX delivery_states_edition ON delivery_states (edition_id, state)",
        """CREATE TABLE engagement (
            delivery_id INTEGER PRIMARY KEY,
            edition_id INTEGER NOT NULL,
            subscriber_id INTEGER,
            human_opens INTEGER NOT NULL DEFAULT 0,
            machine_opens INTEGER NOT NULL DEFAULT 0,
            clicks INTEGER NOT NULL DEFAULT 0,
            first_open_at INTEGER,
            first_click_at INTEGER
        )""",
        "CREATE INDEX engagement_edition ON engagement (edition_id)",
        """CREATE INDEX audit_unsubscribes ON audit (newsletter, at)
           WHERE action = 'subscription' AND new_status = 'unsubscribed'""",
    ):
        db.execute(statement)


@migrations()
def m011_editor_hand(db: Database) -> None:
    """Held slots and editions, holds by hand, per-edition edits, and which command ran.

    `slots.status` gains `held` (a check error or an editor holds the slot); an edition
    keeps the check errors that hold it and who forced it out past them; `holds` are the
    editors' holds; `edition_edits` is every editor's change to one edition, newest wins.
    """
    # The values of `SlotStatus` when this migration was written: a migration is history.
    statuses = "'sent', 'missed', 'skipped', 'failed', 'held'"
    for statement in (
        f"""CREATE TABLE slots_new (
            id INTEGER PRIMARY KEY,
            newsletter TEXT NOT NULL,
            timezone TEXT NOT NULL,
            slot_at TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ({statuses})),
            note TEXT NOT NULL DEFAULT '',
            editions INTEGER NOT NULL DEFAULT 0,
            sent INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            skipped INTEGER NOT NULL DEFAULT 0,
            unknown INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 1,
            run_at TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (newsletter, timezone, slot_at)
        )""",
        """INSERT INTO slots_new (id, newsletter, timezone, slot_at, status, note, editions, sent,
               failed, skipped, unknown, attempts, run_at, created_at, updated_at)
           SELECT id, newsletter, timezone, slot_at, status, note, editions, sent, failed,
               skipped, unknown, attempts, run_at, created_at, updated_at FROM slots""",
        "DROP TABLE slots",
        "ALTER TABLE slots_new RENAME TO slots",
        "CREATE INDEX slots_recent ON slots (newsletter, slot_at)",
        "ALTER TABLE runs ADD COLUMN command TEXT NOT NULL DEFAULT 'run'",
        "ALTER TABLE editions ADD COLUMN held TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE editions ADD COLUMN forced_by TEXT NOT NULL DEFAULT ''",
        """CREATE TABLE holds (
            id INTEGER PRIMARY KEY,
            newsletter TEXT NOT NULL,
            timezone TEXT NOT NULL DEFAULT '',
            until TEXT,
            held_by TEXT NOT NULL,
            held_at TEXT NOT NULL,
            released_by TEXT,
            released_at TEXT
        )""",
        "CREATE INDEX holds_active ON holds (newsletter) WHERE released_at IS NULL",
        """CREATE TABLE edition_edits (
            id INTEGER PRIMARY KEY,
            newsletter TEXT NOT NULL,
            edition_date TEXT NOT NULL,
            action TEXT NOT NULL
                CHECK (action IN ('drop', 'restore', 'subject', 'preheader', 'note')),
            story_id INTEGER,
            value TEXT NOT NULL DEFAULT '',
            who TEXT NOT NULL,
            at TEXT NOT NULL
        )""",
        "CREATE INDEX edition_edits_edition ON edition_edits (newsletter, edition_date, id)",
    ):
        db.execute(statement)


@migrations()
def m009_guards(db: Database) -> None:
    """Each webhook body is stored once (`body_sha256`: a replayed post is answered, not stored
    again), and a post given up on (`failed_at`: unreadable, or discarded by hand) is no
    longer pending. A sign-up whose confirmation email could not be sent stays queued with
    its `error`, tried again, and shown by `digest status`."""
    for statement in (
        "ALTER TABLE signup_requests ADD COLUMN error TEXT",
        "ALTER TABLE webhook_posts ADD COLUMN body_sha256 TEXT",
        "ALTER TABLE webhook_posts ADD COLUMN failed_at TEXT",
        "CREATE UNIQUE INDEX webhook_posts_body ON webhook_posts (body_sha256)",
    ):
        db.execute(statement)


@migrations()
def m012_archive_days(db: Database) -> None:
    """The public archive's editions: one per newsletter and day, frozen when first built.

    `html` is the recipient-free web copy; `stories` a snapshot of what it carried (title,
    link, teaser, topic), so a later edit of a story never rewrites an archived day; `leads`
    the first three titles alone, all a list of days reads.
    """
    db.executescript(
        """
        CREATE TABLE archive_days (
            id INTEGER PRIMARY KEY,
            newsletter TEXT NOT NULL,
            day TEXT NOT NULL,
            slot_at TEXT NOT NULL,
            subject TEXT NOT NULL,
            preheader TEXT NOT NULL DEFAULT '',
            html TEXT NOT NULL,
            stories TEXT NOT NULL,
            leads TEXT NOT NULL DEFAULT '[]',
            topics TEXT NOT NULL DEFAULT '',
            built_at TEXT NOT NULL,
            hidden INTEGER NOT NULL DEFAULT 0,
            changed_at TEXT NOT NULL,
            UNIQUE (newsletter, day)
        );
        CREATE INDEX archive_days_shown ON archive_days (newsletter, hidden, day);
        -- Read on every page (validators, topic feeds) without walking the copies' pages.
        CREATE INDEX archive_days_changed ON archive_days (newsletter, changed_at);
        CREATE INDEX archive_days_topics ON archive_days (newsletter, hidden, topics);
        """
    )


@migrations()
def m013_story_clicks(db: Database) -> None:
    """Summaries kept as mail is sent and events are applied, so a slot reads its stories'
    impressions, clicks and lift from a few thousand rows, never a day's events or the
    editions' HTML (benchmarks/lift.py).

    `edition_lineups` (written with each edition) holds its newsletter, slot and stories in
    order (and how many); `edition_sends` (the ledger) how many readers it was sent to. As
    events are applied: `story_clicks` holds one row per reader and story clicked (the first
    click, how many, and when it became known as a machine's, `feedback.machines`; NULL: a
    person's);
    `story_click_hours` adds those up per edition, story and hour as changes (a person's
    click, then maybe its turn to a machine's), `position_click_hours` people's clicks per
    newsletter, slot day, position and hour, and `reach_hours` the readers each edition did
    not reach (deferred, dropped, blocked, bounced) by hour, so a count at any moment is a sum
    of whole hours. `clicks_set_aside` counts the clicks left out and why;
    `delivery_states.delivered_at` is when the email was delivered (the machine rule needs
    it). Outcomes already reported are filled in; clicks kept before this migration stay in
    `events`, not summarised.
    """
    for statement in (
        "ALTER TABLE delivery_states ADD COLUMN delivered_at INTEGER",
        """CREATE TABLE edition_lineups (
            edition_id INTEGER PRIMARY KEY,
            newsletter TEXT NOT NULL,
            slot_at TEXT NOT NULL,
            story_ids TEXT NOT NULL,
            stories INTEGER NOT NULL
        )""",
        "CREATE INDEX edition_lineups_slot ON edition_lineups (newsletter, slot_at)",
        """INSERT INTO edition_lineups (edition_id, newsletter, slot_at, story_ids, stories)
           SELECT id, newsletter, slot_at, story_ids, json_array_length(story_ids)
           FROM editions""",
        """CREATE TABLE edition_sends (
            edition_id INTEGER PRIMARY KEY,
            readers INTEGER NOT NULL
        )""",
        """INSERT INTO edition_sends (edition_id, readers)
           SELECT edition_id, COUNT(*) FROM deliveries WHERE status = 'sent'
           GROUP BY edition_id""",
        """CREATE TABLE story_clicks (
            delivery_id INTEGER NOT NULL,
            story_id INTEGER NOT NULL,
            edition_id INTEGER NOT NULL,
            first_at INTEGER NOT NULL,
            clicks INTEGER NOT NULL,
            machine_at INTEGER,
            PRIMARY KEY (delivery_id, story_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE story_click_hours (
            edition_id INTEGER NOT NULL,
            story_id INTEGER NOT NULL,
            hour INTEGER NOT NULL,
            human INTEGER NOT NULL,
            machine INTEGER NOT NULL,
            PRIMARY KEY (edition_id, story_id, hour)
        ) WITHOUT ROWID""",
        """CREATE TABLE position_click_hours (
            newsletter TEXT NOT NULL,
            slot_day INTEGER NOT NULL,
            position INTEGER NOT NULL,
            hour INTEGER NOT NULL,
            human INTEGER NOT NULL,
            PRIMARY KEY (newsletter, slot_day, position, hour)
        ) WITHOUT ROWID""",
        """CREATE TABLE reach_hours (
            edition_id INTEGER NOT NULL,
            hour INTEGER NOT NULL,
            lost INTEGER NOT NULL,
            PRIMARY KEY (edition_id, hour)
        ) WITHOUT ROWID""",
        # The states the webhook already reported, each from its own hour.
        """INSERT INTO reach_hours (edition_id, hour, lost)
           SELECT edition_id, occurred_at / 3600, COUNT(*) FROM delivery_states
           WHERE state IN ('deferred', 'dropped', 'blocked', 'bounced')
           GROUP BY edition_id, occurred_at / 3600""",
        """CREATE TABLE clicks_set_aside (
            edition_id INTEGER NOT NULL,
            reason TEXT NOT NULL,
            clicks INTEGER NOT NULL,
            PRIMARY KEY (edition_id, reason)
        ) WITHOUT ROWID""",
    ):
        db.execute(statement)


@migrations()
def m016_report_mails(db: Database) -> None:
    """The report mailed to each editor the morning after an edition: one row per newsletter,
    edition (its local date) and address, claimed before the send and settled after it."""
    db.execute(
        """CREATE TABLE report_mails (
            id INTEGER PRIMARY KEY,
            newsletter TEXT NOT NULL,
            edition TEXT NOT NULL,
            address TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('sending', 'sent', 'failed')),
            provider_id TEXT,
            error TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (newsletter, edition, address)
        )"""
    )


@migrations()
def m010_edition_history(db: Database) -> None:
    """Each edition says which history its readers share (per reader, never a repeat).

    `history` names it ("moved from Europe/London: 5 stories already sent", '' for readers
    with none), `already_sent` holds those stories' ids; the slot index finds a window's
    editions without reading every edition ever sent.
    """
    for statement in (
        "ALTER TABLE editions ADD COLUMN history TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE editions ADD COLUMN already_sent TEXT NOT NULL DEFAULT '[]'",
        "CREATE INDEX editions_slot ON editions (slot_at)",
    ):
        db.execute(statement)


@migrations()
def m014_list_health(db: Database) -> None:
    """List health: a `lapsed` status, each reader's last human open and click, the sunset's asks.

    `lapsed` (a reader who stopped reading, asked once, and did not answer) joins the statuses
    of `subscriptions` and `subscribers`, and `sunset` the sources of `audit`. Only a CHECK
    constraint widens, which every row already meets, so the tables are not rebuilt: their
    schema text is edited in place, the procedure SQLite documents for changing constraints
    (sqlite.org/lang_altertable.html, "other kinds of table schema changes"), which writes a
    few pages instead of copying a million rows. Subscriptions get `asked_at` (the reconfirm
    email was claimed), `reconfirm_id` (it left) and `kept_at` (the keep button was pressed).
    `reader_engagement` holds each reader's last human open and click per newsletter
    (database time text); `list_health` one row of counts per newsletter and day.
    """
    # The values of `SubscriberStatus`, `SubscriptionStatus` and `AUDIT_SOURCES` before and
    # after this migration: a migration is history.
    widen = {
        "subscribers": (
            "'active', 'pending', 'unsubscribed', 'bounced', 'complained'",
            "'active', 'pending', 'unsubscribed', 'bounced', 'complained', 'lapsed'",
        ),
        "subscriptions": (
            "'active', 'pending', 'unsubscribed'",
            "'active', 'pending', 'unsubscribed', 'lapsed'",
        ),
        "audit": (
            "'form', 'link', 'one-click', 'cli', 'import', 'webhook'",
            "'form', 'link', 'one-click', 'cli', 'import', 'webhook', 'sunset'",
        ),
    }
    version = db.execute("PRAGMA schema_version").fetchone()[0]
    db.execute("PRAGMA writable_schema = ON")
    try:
        for table, (before, after) in widen.items():
            sql = db.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", [table]
            ).fetchone()[0]
            if sql.count(f"IN ({before})") != 1:
                raise StoreError(f"{table}'s schema is not the one m014_list_health expects")
            db.execute(
                "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                [sql.replace(f"IN ({before})", f"IN ({after})"), table],
            )
        db.execute(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        db.execute("PRAGMA writable_schema = OFF")
    for statement in (
        "ALTER TABLE subscriptions ADD COLUMN asked_at TEXT",
        "ALTER TABLE subscriptions ADD COLUMN reconfirm_id TEXT",
        "ALTER TABLE subscriptions ADD COLUMN kept_at TEXT",
        # The few readers asked or lapsed, found without reading a million subscriptions.
        """CREATE INDEX subscriptions_asked ON subscriptions (newsletter, asked_at)
           WHERE asked_at IS NOT NULL""",
        """CREATE TABLE reader_engagement (
            subscriber_id INTEGER NOT NULL,
            newsletter TEXT NOT NULL,
            last_open_at TEXT,
            last_click_at TEXT,
            PRIMARY KEY (subscriber_id, newsletter)
        )""",
        """CREATE TABLE list_health (
            newsletter TEXT NOT NULL,
            day TEXT NOT NULL,
            counts TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            PRIMARY KEY (newsletter, day)
        )""",
    ):
        db.execute(statement)


@migrations()
def m017_no_change_indexes(db: Database) -> None:
    """The leavers' check reads each batch's readers as they are now (`ledger.claim_batch`),
    not the readers changed since a time: nothing reads these, and every change wrote them."""
    db.execute("DROP INDEX IF EXISTS subscribers_changed")
    db.execute("DROP INDEX IF EXISTS subscriptions_changed")


@contextmanager
def write_transaction(db: Database) -> Iterator[Database]:
    """A transaction that takes the write lock first (BEGIN IMMEDIATE).

    `db.atomic()` begins deferred: a transaction that reads and then writes while another
    process writes fails at once with "database is locked" instead of waiting. Taking the
    lock up front makes it wait (busy_timeout) like any single statement. Nested use
    becomes a savepoint of the outer transaction.
    """
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")


def open_db(path: str | Path) -> Database:
    """Open (creating if needed) the database in WAL mode and bring its schema up to date."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = Database(path)
        db.execute("PRAGMA busy_timeout = 30000")
        db.enable_wal()
        db.execute("PRAGMA synchronous = NORMAL")
        migrations.apply(db)
    except (sqlite3.DatabaseError, OSError) as exc:
        raise StoreError(
            f"Cannot open the database {path}: {exc}. Check the path (--db or DIGEST_DB) "
            "and that it is a SQLite file you can write."
        ) from None
    return db


def known_schema() -> list[str]:
    """The names of every migration this version of digest has, oldest first."""
    return [m.name for m in migrations.pending(Database(memory=True))]


def schema_version(db: Database) -> list[str]:
    """The names of the migrations applied, oldest first."""
    return [m.name for m in migrations.applied(db)]
