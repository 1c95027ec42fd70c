"""The checks a built edition must pass before anyone gets it: `digest check`'s, on its email.

`digest check`, the studio and `digest run`/`digest send` all judge an edition here, as a
sample reader gets it (their own links made inert), so an error the studio shows is the
error that holds the send.
"""

from __future__ import annotations

from sqlite_utils import Database

from ..config import Config
from ..newsroom.stories import find_story
from ..urls import ReaderLinks
from .build import Edition
from .checks import EmailParts, Finding, run_checks
from .personalize import personalize, recipient_values
from .render import story_link

SAMPLE_NAME = "Sample Reader"


def story_links(db: Database, config: Config, edition: Edition) -> tuple[str, ...]:
    """The links of an edition's stories exactly as its templates got them."""
    newsletter = config.newsletter(edition.newsletter)
    return tuple(story_link(find_story(db, str(i)), newsletter) for i in edition.story_ids)


def sample_parts(
    db: Database, config: Config, edition: Edition, name: str = SAMPLE_NAME
) -> EmailParts:
    """The edition as a reader called `name` gets it, with an inert link for their own."""
    values = recipient_values(name, ReaderLinks(config, edition.newsletter).preview_url())
    return EmailParts(
        edition.subject,
        edition.preheader,
        personalize(edition.html, values),
        personalize(edition.text, values),
        story_links(db, config, edition),
    )


def edition_findings(db: Database, config: Config, edition: Edition) -> list[Finding]:
    """Every check of the edition's email, errors first."""
    return run_checks(sample_parts(db, config, edition))


def held_reason(findings: list[Finding]) -> str:
    """The check errors' own words, joined: what a held edition and slot record; "" if none."""
    return "; ".join(f"{f.check}: {f.message}" for f in findings if f.level == "error")
