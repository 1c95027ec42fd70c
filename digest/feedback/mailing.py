"""The report by mail: the morning after each edition, to each editor in `[report] mail_to`, once.

`digest run` calls `mail_reports`. From `mail_hour` in the newsletter's time zone on the day
after an edition, the report of that edition (the studio's page, its charts as PNG images
inline, since mail clients do not show SVG; its text part what `digest report` prints) goes
to each editor through the configured transport, after the checks every digest passes. Each
(newsletter, edition, address) is claimed in `report_mails` before the send and settled after
it: a re-run, or two runs at once, never mails it twice; a failed send is tried again by the
next run, one left `sending` by a killed process is reported and left alone.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from ..clock import to_db, utcnow
from ..config import Config, NewsletterConfig
from ..delivery.message import new_message
from ..delivery.transports import Single, Transport
from ..edition.checks import EmailParts, has_errors, run_checks
from ..errors import DigestError
from ..store import write_transaction
from .report import edition_report, editions_by_day, report_lines

log = logging.getLogger(__name__)
# An edition whose morning-after passed longer ago than this (cron was down, or mail_to was
# just set) is not mailed late.
MAIL_WITHIN = timedelta(days=2)


def report_due(
    db: Database, newsletter: NewsletterConfig, mail_hour: int, now: datetime
) -> date | None:
    """The edition (local date) whose morning-after has come and is within MAIL_WITHIN."""
    zone = ZoneInfo(newsletter.timezone)
    days = [
        day
        for day in editions_by_day(db, newsletter.name, newsletter.timezone)
        if _morning_after(day, mail_hour, zone)
        <= now
        < _morning_after(day, mail_hour, zone) + MAIL_WITHIN
    ]
    return max(days, default=None)


def _morning_after(day: date, mail_hour: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(mail_hour), zone)


def mail_reports(
    db: Database, config: Config, transport: Transport, now: datetime
) -> list[tuple[str, bool]]:
    """Mail every report that is due and not yet mailed: a line for each newsletter that had
    something to say, and whether a send failed."""
    if not config.report.mail_to:
        return []
    lines = []
    for newsletter in config.newsletters.values():
        day = report_due(db, newsletter, config.report.mail_hour, now)
        if day is not None:
            line, failed = mail_report(db, config, transport, newsletter, day, now)
            if line:
                lines.append((line, failed))
    return lines


def mail_report(
    db: Database,
    config: Config,
    transport: Transport,
    newsletter: NewsletterConfig,
    day: date,
    now: datetime,
) -> tuple[str, bool]:
    """Mail one edition's report to each editor who has not had it; says what came of it
    (nothing when there was nothing to do), and whether a send failed."""
    edition = day.isoformat()
    label = f"report of {newsletter.name} {edition}"
    stuck = _stuck(db, newsletter.name, edition)
    unknown = (
        f"; {len(stuck)} left unknown by a stopped run, not sent again: {', '.join(stuck)}"
        if stuck
        else ""
    )
    addresses = [a for a in config.report.mail_to if _claim(db, newsletter.name, edition, a)]
    if not addresses:
        return (f"{label}: nothing to mail{unknown}" if stuck else "", False)
    try:
        messages = build_report_mails(db, config, newsletter, day, now, addresses)
    except Exception as exc:
        # Whatever goes wrong drawing the report (a chart the renderer refuses included),
        # the run has sent its digests and goes on; the next run tries the report again.
        if not isinstance(exc, DigestError):
            log.exception("the report of %s %s could not be built", newsletter.name, edition)
        for address in addresses:
            _settle(db, newsletter.name, edition, address, "failed", error=str(exc))
        return f"{label}: FAILED: {exc} (tried again by the next run)", True
    sent, failed = [], []
    for address, message in messages:
        try:
            provider_id = transport.send_single(message, Single.REPORT)
        except DigestError as exc:
            _settle(db, newsletter.name, edition, address, "failed", error=str(exc))
            failed.append(f"{address} ({exc})")
            continue
        _settle(db, newsletter.name, edition, address, "sent", provider_id=provider_id)
        sent.append(address)
    line = f"{label}: mailed to {len(sent)} editor(s)"
    if failed:
        line += f"; FAILED for {', '.join(failed)} (tried again by the next run)"
    return line + unknown, bool(failed)


def build_report_mails(
    db: Database,
    config: Config,
    newsletter: NewsletterConfig,
    day: date,
    now: datetime,
    addresses: list[str],
) -> list[tuple[str, EmailMessage]]:
    """One message per editor: the report page with PNG charts inline and its text part,
    refused (a DigestError) when the checks every digest passes find an error."""
    # Here, not at the top: the charts' libraries weigh some 25 MB, and `digest run` imports
    # this module on every tick whether or not a report is due.
    from .document import report_document

    report = edition_report(db, config, newsletter.name, day.isoformat(), now)
    document = report_document(db, config, report, png=True)
    text = "\n".join(report_lines(report))
    subject = f"Report: {newsletter.title}, the edition of {day.isoformat()}"
    findings = run_checks(
        EmailParts(subject, subject, document.html, text, inline_images=list(document.images))
    )
    if has_errors(findings):
        errors = "; ".join(f.message for f in findings if f.level == "error")
        raise DigestError(f"the report's email fails its checks: {errors}")
    messages = []
    for address in addresses:
        message = new_message(
            config,
            Address(addr_spec=address),
            subject,
            now,
            f"report.{newsletter.name}.{day.isoformat()}",
            {},
            text,
            document.html,
        )
        html = message.get_body(("html",))
        assert html is not None  # new_message always adds it
        for cid, png in document.images.items():
            html.add_related(
                png, "image", "png", cid=f"<{cid}>", filename=cid.partition("@")[0] + ".png"
            )
        messages.append((address, message))
    return messages


def _claim(db: Database, newsletter: str, edition: str, address: str) -> bool:
    """Take the report of `edition` for `address`: new, or failed before; never one sent or
    under way (a claim commits before the send, so two runs never both take it)."""
    now = to_db(utcnow())
    with write_transaction(db):
        cursor = db.execute(
            """INSERT INTO report_mails (newsletter, edition, address, status, created_at,
                   updated_at) VALUES (?, ?, ?, 'sending', ?, ?)
               ON CONFLICT (newsletter, edition, address) DO UPDATE SET status = 'sending',
                   error = '', updated_at = excluded.updated_at
               WHERE report_mails.status = 'failed'""",
            [newsletter, edition, address, now, now],
        )
    return cursor.rowcount > 0


def _settle(
    db: Database,
    newsletter: str,
    edition: str,
    address: str,
    status: str,
    *,
    provider_id: str | None = None,
    error: str = "",
) -> None:
    with write_transaction(db):
        db.execute(
            """UPDATE report_mails SET status = ?, provider_id = ?, error = ?, updated_at = ?
               WHERE newsletter = ? AND edition = ? AND address = ?""",
            [status, provider_id, error[:500], to_db(utcnow()), newsletter, edition, address],
        )


def _stuck(db: Database, newsletter: str, edition: str) -> list[str]:
    """Addresses whose mail a stopped run left `sending`: it may or may not have gone."""
    rows = db.execute(
        """SELECT address FROM report_mails WHERE newsletter = ? AND edition = ?
           AND status = 'sending'""",
        [newsletter, edition],
    )
    return [address for (address,) in rows]


def mailed(db: Database, newsletter: str, edition: str) -> dict[str, str]:
    """Each address the edition's report was claimed for, and its status."""
    rows = db.execute(
        "SELECT address, status FROM report_mails WHERE newsletter = ? AND edition = ?",
        [newsletter, edition],
    )
    return dict(rows.fetchall())
