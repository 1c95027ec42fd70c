"""The report as one self-contained HTML document: the studio's report page, charts inline.

`digest report --html FILE` writes it with SVG charts (it opens offline, nothing to fetch);
the editors' morning mail carries it with PNG charts as inline attachments, since mail
clients do not show SVG. The page's body is the studio's own (`_report_body.html`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlite_utils import Database

from ..config import PROJECT_TEMPLATES, Config
from . import charts
from .figures import report_figures
from .report import NUMBERS, report_lines
from .report import _percent as percent

PAGES = PROJECT_TEMPLATES / "pages" / "studio"


@dataclass(frozen=True)
class ReportDocument:
    """The document's HTML and, for mail, the PNG images it refers to by Content-ID."""

    html: str
    images: dict[str, bytes] = field(default_factory=dict)


def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(PAGES), autoescape=select_autoescape(["html"]), auto_reload=False
    )


def report_document(
    db: Database, config: Config, report: dict[str, Any], *, png: bool = False
) -> ReportDocument:
    """The report page as one file: SVG charts inline, or (`png`) `cid:` images for mail."""
    pictures = charts.pictures(report_figures(db, config, report))
    images: dict[str, bytes] = {}

    def draw(picture: charts.Picture) -> Markup:
        if not png:
            return inline_svg(picture)
        cid = f"chart-{picture.key}@digest"
        images[cid] = picture.png()
        return Markup('<img src="cid:{}" alt="{}" width="{}">').format(
            cid, picture.alt, charts.WIDTH + 120
        )

    page = render_page("report_file.html", **report_context(report, pictures, draw))
    return ReportDocument(page, images)


def report_context(
    report: dict[str, Any],
    pictures: list[charts.Picture],
    draw: Callable[[charts.Picture], Markup],
) -> dict[str, Any]:
    """What `_report_body.html` is rendered with, in the studio and in files alike."""
    return {
        "report": report,
        "numbers": NUMBERS,
        "printed": "\n".join(report_lines(report)),
        "percent": percent,
        "pictures": pictures,
        "draw": draw,
    }


def render_page(template: str, **context: Any) -> str:
    """One of the studio's standalone pages, its style sheet inline."""
    css = Markup((PAGES / "studio.css").read_text(encoding="utf-8"))
    return _environment().get_template(template).render(css=css, **context)


def inline_svg(picture: charts.Picture) -> Markup:
    """A picture as a page shows it: its SVG, inline."""
    return Markup(picture.svg())
