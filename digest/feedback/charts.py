"""The report's pictures: Vega-Lite charts (altair) of plain figures, rendered to SVG or PNG here.

vl-convert renders on the server with no browser, no script and no network, so a chart is
plain markup: inline SVG for pages, PNG for mail (mail clients do not show SVG). A page's
SVG draws its text and rules in `currentColor`, so one picture follows the page's light or
dark colours; a PNG is drawn with dark ink on white. Series differ in shape, dash and
label as well as colour, so a chart reads in grayscale.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from typing import Any

import altair as alt
import vl_convert

from .figures import BESIDE, FUNNEL, HEALTH_FLOWS, HOURS, RATE_SERIES

PAGE_INK = "currentColor"
PRINT_INK = "#1c1c1c"
FONT = "-apple-system, BlinkMacSystemFont, Segoe UI, Roboto, Helvetica, Arial, sans-serif"
# Mid tones: at least 3:1 against white and against the studio's dark background alike.
PALETTE = ["#4f7cc0", "#c2702e", "#3f9b6b", "#a05fb5", "#8a8a8a"]
SHAPES = ["circle", "square", "triangle-up", "diamond", "cross"]
DASHES = [[1, 0], [6, 3], [2, 2], [8, 3, 2, 3], [1, 3]]
WIDTH = 560
_ARIA = re.compile(r'\s(?:role|aria-[a-z]+)="[^"]*"')


@dataclass(frozen=True)
class Picture:
    """One chart as a page shows it: title, caption, text alternative and its numbers."""

    key: str
    title: str
    caption: str
    alt: str
    spec: dict[str, Any]
    columns: list[str]
    rows: list[list[Any]]
    empty: str = ""
    notes: list[str] = field(default_factory=list)

    def svg(self) -> str:
        """Inline SVG, its ids made unique to this picture, its text alternative on the root."""
        markup = vl_convert.vegalite_to_svg(self.spec)
        # Vega labels each mark group for screen readers, but a chart is one image here: its
        # text alternative is the sentence on the root, its numbers the table beneath.
        markup = _ARIA.sub("", markup)
        markup = re.sub(r'\bid="', f'id="{self.key}-', markup)
        markup = markup.replace("url(#", f"url(#{self.key}-").replace(
            'href="#', f'href="#{self.key}-'
        )
        label = html.escape(self.alt, quote=True)
        return markup.replace(
            "<svg ", f'<svg role="img" aria-label="{label}" focusable="false" ', 1
        )

    def png(self) -> bytes:
        """The chart as a PNG drawn with dark ink on white, for mail."""
        return vl_convert.vegalite_to_png(_with_ink(self.spec, PRINT_INK, "white"), scale=2)


def _theme(chart: alt.TopLevelMixin, ink: str) -> alt.TopLevelMixin:
    return (
        chart.configure(font=FONT, background="transparent")
        .configure_axis(
            labelColor=ink,
            titleColor=ink,
            domainColor=ink,
            tickColor=ink,
            gridColor=ink,
            gridOpacity=0.15,
            labelFontSize=12,
            titleFontSize=12,
        )
        .configure_legend(labelColor=ink, titleColor=ink, labelFontSize=12, titleFontSize=12)
        .configure_header(labelColor=ink, titleColor=ink, labelFontSize=12, titleFontSize=12)
        .configure_title(color=ink, fontSize=14, anchor="start")
        .configure_view(stroke=None)
        .configure_text(color=ink)
    )


def _with_ink(spec: dict[str, Any], ink: str, background: str) -> dict[str, Any]:
    """The same spec with another ink (PNG has no `currentColor`) and background."""
    changed: dict[str, Any] = json.loads(json.dumps(spec).replace(PAGE_INK, ink))
    changed["config"]["background"] = background
    return changed


def _rows(name: str, order: list[str] | None = None) -> alt.Row:
    """One chart per value of a field, stacked, each labelled at its top left."""
    header = alt.Header(labelAngle=0, labelAlign="left", labelAnchor="start", labelOrient="top")
    return alt.Row(f"{name}:N", title=None, sort=order or "ascending", header=header)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def funnel(rows: list[dict[str, Any]]) -> Picture:
    """Sent, delivered, opened by people, Apple proxy only, clicked by people; machines' clicks,
    bounces and complaints beside, one row of bars per zone, each bar labelled with its number."""
    base = alt.Chart(alt.Data(values=rows))
    y = alt.Y("stage:N", sort=[label for _, label in (*FUNNEL, *BESIDE)], title=None)
    bars = base.mark_bar().encode(
        y=y,
        x=alt.X("readers:Q", title="Readers"),
        color=alt.Color(
            "kind:N",
            scale=alt.Scale(domain=["funnel", "beside"], range=[PALETTE[0], PALETTE[1]]),
            legend=alt.Legend(
                title=None, labelExpr="datum.label == 'funnel' ? 'the funnel' : 'beside it'"
            ),
        ),
        opacity=alt.Opacity(
            "kind:N", scale=alt.Scale(domain=["funnel", "beside"], range=[1, 0.55]), legend=None
        ),
    )
    labels = base.mark_text(align="left", dx=4, color=PAGE_INK).encode(
        y=y, x="readers:Q", text="readers:Q"
    )
    zones = sorted({row["zone"] for row in rows})
    chart = (
        alt.layer(bars, labels)
        .properties(width=WIDTH - 140, height=alt.Step(18))
        .facet(row=_rows("zone"))
        .properties(title="The funnel, per time zone")
    )
    sent = {r["zone"]: r["readers"] for r in rows if r["stage"] == "Sent"}
    clicked = {r["zone"]: r["readers"] for r in rows if r["stage"] == "Clicked by people"}
    alt_text = "Funnel bars per time zone: " + "; ".join(
        f"{zone}: {sent.get(zone, 0)} sent, {clicked.get(zone, 0)} clicked by people"
        for zone in zones
    )
    return Picture(
        key="funnel",
        title="The funnel",
        caption="Per time zone: readers sent to, delivered, opened by people, opened only by "
        "Apple's privacy proxy, and who clicked (people, not link scanners); readers whose "
        "clicks were all a scanner's, bounces (and blocks) and complaints beside.",
        alt=alt_text + ".",
        spec=_theme(chart, PAGE_INK).to_dict(validate=False),
        columns=["Time zone", "Stage", "Readers"],
        rows=[[r["zone"], r["stage"], r["readers"]] for r in rows],
    )


def _series_marks(
    rows: list[dict[str, Any]], x: alt.X, y: alt.Y, series: list[str], **line: Any
) -> alt.LayerChart:
    """Lines told apart by dash, points by shape and colour: one series per legend entry."""
    base = alt.Chart(alt.Data(values=rows))
    domain = alt.Scale(domain=series, range=PALETTE[: len(series)])
    legend = alt.Legend(title=None, orient="top", symbolStrokeWidth=2)
    lines = base.mark_line(strokeWidth=2, **line).encode(
        x=x,
        y=y,
        color=alt.Color("series:N", scale=domain, legend=legend),
        strokeDash=alt.StrokeDash(
            "series:N", scale=alt.Scale(domain=series, range=DASHES[: len(series)]), legend=legend
        ),
    )
    points = base.mark_point(filled=True, size=36).encode(
        x=x,
        y=y,
        color=alt.Color("series:N", scale=domain, legend=legend),
        shape=alt.Shape(
            "series:N", scale=alt.Scale(domain=series, range=SHAPES[: len(series)]), legend=legend
        ),
    )
    return alt.LayerChart(layer=[lines, points])


def hours(rows: list[dict[str, Any]]) -> Picture:
    """Opens by people and clicks per hour since each zone's send, for the first 48 hours."""
    series = ["Opens by people", "Clicks by people"]
    x = alt.X("hour:Q", title="Hours since the zone's send", scale=alt.Scale(domain=[0, HOURS]))
    y = alt.Y("events:Q", title="Events in the hour")
    chart = (
        _series_marks(rows, x, y, series, interpolate="step-after")
        .properties(width=WIDTH, height=120)
        .facet(row=_rows("zone"))
        .properties(title=f"Opens and clicks, the first {HOURS} hours")
    )
    totals: dict[tuple[str, str], int] = {}
    peak: dict[str, tuple[int, int]] = {}
    for row in rows:
        key = (row["zone"], row["series"])
        totals[key] = totals.get(key, 0) + row["events"]
        if row["series"] == "Opens by people" and row["events"] > peak.get(row["zone"], (-1, 0))[1]:
            peak[row["zone"]] = (row["hour"], row["events"])
    zones = sorted({row["zone"] for row in rows})
    alt_text = "Opens and clicks by hour since the send: " + "; ".join(
        f"{zone}: {totals.get((zone, 'Opens by people'), 0)} opens by people, most in hour "
        f"{peak.get(zone, (0, 0))[0]}, {totals.get((zone, 'Clicks by people'), 0)} clicks by people"
        for zone in zones
    )
    return Picture(
        key="hours",
        title="Opens and clicks over time",
        caption=f"Opens by people and clicks in each hour after each time zone's send, for "
        f"the first {HOURS} hours (Apple's proxy opens left out: they are not readers).",
        alt=alt_text + ".",
        spec=_theme(chart, PAGE_INK).to_dict(validate=False),
        columns=["Time zone", "Hour since send", "Opens by people", "Clicks by people"],
        rows=_hour_table(rows),
        empty="No opens or clicks recorded for this edition yet.",
    )


def _hour_table(rows: list[dict[str, Any]]) -> list[list[Any]]:
    cells: dict[tuple[str, int], dict[str, int]] = {}
    for row in rows:
        cells.setdefault((row["zone"], row["hour"]), {})[row["series"]] = row["events"]
    return [
        [zone, hour, found.get("Opens by people", 0), found.get("Clicks by people", 0)]
        for (zone, hour), found in sorted(cells.items())
        if any(found.values())
    ]


def stories(stories: list[dict[str, Any]], expected: list[dict[str, Any]]) -> Picture:
    """Each story's click-through against its place in the email, on the expected curve."""
    x = alt.X("position:Q", title="Place in the email", axis=alt.Axis(tickMinStep=1, format="d"))
    y = alt.Y("ctr:Q", title="Click-through by people", axis=alt.Axis(format="%"))
    curve_y = alt.Y("expected_ctr:Q", title="Click-through by people", axis=alt.Axis(format="%"))
    curve = (
        alt.Chart(alt.Data(values=[e | {"series": "Expected for the place"} for e in expected]))
        .mark_line(
            strokeDash=[6, 3],
            strokeWidth=2,
            color=PALETTE[4],
            point=alt.OverlayMarkDef(shape="diamond", color=PALETTE[4], size=30),
        )
        .encode(x=x, y=curve_y)
    )
    domain = ["above its place", "at or below its place"]
    points = (
        alt.Chart(alt.Data(values=stories))
        .mark_point(filled=True, size=90)
        .encode(
            x=x,
            y=y,
            shape=alt.Shape(
                "against_slot:N",
                scale=alt.Scale(domain=domain, range=["triangle-up", "circle"]),
                legend=alt.Legend(title=None, orient="top"),
            ),
            color=alt.Color(
                "against_slot:N",
                scale=alt.Scale(domain=domain, range=[PALETTE[1], PALETTE[0]]),
                legend=alt.Legend(title=None, orient="top"),
            ),
            tooltip=[
                "title:N",
                "human_clicks:Q",
                "impressions:Q",
                alt.Tooltip("ctr:Q", format=".1%"),
            ],
        )
    )
    # Only the stories that beat their place are named on the chart; the table names all.
    labels = (
        alt.Chart(alt.Data(values=[s for s in stories if s["against_slot"] == domain[0]]))
        .transform_calculate(
            short="length(datum.title) > 28 ? slice(datum.title, 0, 27) + '…' : datum.title"
        )
        .mark_text(align="left", dx=8, dy=-6, fontSize=11, color=PAGE_INK)
        .encode(x=x, y=y, text="short:N")
    )
    chart = alt.layer(curve, points, labels).properties(
        width=WIDTH, height=260, title="Click-through by story, against its place"
    )
    above = [s for s in stories if s["against_slot"] == "above its place"]
    alt_text = (
        f"{len(stories)} stories by place and click-through, with the expected click-through "
        f"of each place as a dashed line; {len(above)} beat their place"
        + (
            ": "
            + ", ".join(
                f"{s['title']} ({_percent(s['ctr'])} at place {s['position']}, "
                f"expected {_percent(s['expected_ctr'])})"
                for s in above[:5]
            )
            if above
            else ""
        )
    )
    return Picture(
        key="stories",
        title="Stories against their place",
        caption="Each story's click-through (people who clicked it, not link scanners, over "
        "the readers it reached) at its place in the edition; the dashed line is the "
        "click-through expected at each place, learned from this newsletter's recent editions "
        "(the report's expected CTR), so a story above it beat its slot (lift above 1).",
        alt=alt_text + ".",
        spec=_theme(chart, PAGE_INK).to_dict(validate=False),
        columns=[
            "Place",
            "Story",
            "People who clicked",
            "Readers reached",
            "Click-through",
            "Expected for the place",
        ],
        rows=[
            [
                s["position"],
                s["title"],
                s["human_clicks"],
                s["impressions"],
                _percent(s["ctr"]),
                _percent(s["expected_ctr"]),
            ]
            for s in stories
        ],
        empty="No story of this edition has reached a reader yet.",
    )


def health(rows: list[dict[str, Any]]) -> Picture:
    """Active readers by day (above), and each day's new, unsubscribed, lapsed, bounced and
    complained (below, a row each), over the last 90 days."""
    flows = [name.title() for name in HEALTH_FLOWS]
    x = alt.X("day:T", title=None, axis=alt.Axis(format="%b %d"))
    active = (
        alt.Chart(alt.Data(values=rows))
        .mark_line(strokeWidth=2, color=PALETTE[0], point=alt.OverlayMarkDef(color=PALETTE[0]))
        .encode(x=x, y=alt.Y("active:Q", title="Active readers"))
        .properties(width=WIDTH, height=120)
    )
    long = [
        {"day": r["day"], "series": name, "readers": r[name.lower()]}
        for r in rows
        for name in flows
    ]
    changes = (
        alt.Chart(alt.Data(values=long))
        .mark_bar(color=PALETTE[1])
        .encode(x=x, y=alt.Y("readers:Q", title=None, axis=alt.Axis(tickMinStep=1)))
        .properties(width=WIDTH, height=40)
        .facet(row=_rows("series", flows))
    )
    chart = alt.vconcat(active, changes).properties(
        title=f"The list's health, the last {len(rows)} days"
    )
    first, last = rows[0], rows[-1]
    sums = {name: sum(r[name.lower()] for r in rows) for name in flows}
    alt_text = (
        f"Active readers went from {first['active']} on {first['day']} to {last['active']} on "
        f"{last['day']}; over the period "
        + ", ".join(f"{n} {name.lower()}" for name, n in sums.items())
    )
    return Picture(
        key="health",
        title="The list's health",
        caption=f"Readers active at the end of each of the last {len(rows)} days (the last "
        "is the active count of the list's health), and each day's new (or back from lapsed), "
        "unsubscribed, lapsed (rested by the sunset policy), bounced and complained readers "
        "(each in its own row), from the subscriptions and the audit trail.",
        alt=alt_text + ".",
        spec=_theme(chart, PAGE_INK).to_dict(validate=False),
        columns=["Day", "Active", *flows],
        rows=[
            [r["day"], r["active"], *(r[name.lower()] for name in flows)]
            for r in rows
            if any(r[name.lower()] for name in flows) or r is rows[-1] or r is rows[0]
        ],
        notes=["Days with no change are left out of the table."],
    )


def rates(rows: list[dict[str, Any]], series: list[str]) -> Picture:
    """Each rate over the newsletter's last editions, a line (dash and shape) per rate."""
    present = [r for r in rows if r["rate"] is not None]
    editions = sorted({r["edition"] for r in rows})
    x = alt.X("edition:T", title="Edition", axis=alt.Axis(format="%b %d"))
    y = alt.Y("rate:Q", title="Rate", axis=alt.Axis(format="%"))
    chart = _series_marks(present, x, y, series).properties(
        width=WIDTH,
        height=220,
        title=f"Rates over the last {len(editions)} edition{'s' if len(editions) != 1 else ''}",
    )
    last = {r["series"]: r["rate"] for r in rows if r["edition"] == editions[-1]}
    alt_text = f"Rates of {len(editions)} editions; the last, {editions[-1]}: " + ", ".join(
        f"{name.lower()} {_percent(last.get(name))}" for name in series
    )
    table: dict[str, dict[str, float | None]] = {}
    for r in rows:
        table.setdefault(r["edition"], {})[r["series"]] = r["rate"]
    return Picture(
        key="rates",
        title="Rates over the last editions",
        caption="Opened by people, clicked, complained and unsubscribed on delivered; bounced "
        "on sent; one point per edition (its local date).",
        alt=alt_text + ".",
        spec=_theme(chart, PAGE_INK).to_dict(validate=False),
        columns=["Edition", *series],
        rows=[
            [day, *(_percent(values.get(name)) for name in series)]
            for day, values in sorted(table.items())
        ],
    )


def pictures(figures: dict[str, Any]) -> list[Picture]:
    """The report's five pictures from `figures.report_figures`."""
    return [
        funnel(figures["funnel"]),
        hours(figures["hours"]),
        stories(figures["stories"], figures["expected"]),
        health(figures["health"]),
        rates(figures["rates"], [label for _, label in RATE_SERIES]),
    ]


# A slot's states on the day strip, each with its own shape (and colour).
STRIP_STATES = ["sent", "failed", "held", "due", "missed", "skipped", "to come"]
STRIP_SHAPES = [
    "circle",
    "cross",
    "square",
    "triangle-right",
    "diamond",
    "triangle-down",
    "triangle-up",
]
STRIP_COLOURS = ["#3f9b6b", "#c0392b", "#a05fb5", "#c2702e", "#8a8a8a", "#8a8a8a", "#4f7cc0"]


def day_strip(key: str, rows: list[dict[str, Any]], now: str, hours: int) -> Picture:
    """Each zone's slots of the `hours` either side of now, by state, with reader counts."""
    x = alt.X(
        "at:T",
        title="UTC",
        axis=alt.Axis(format="%H:%M", tickCount=12),
        scale=alt.Scale(
            domain=[
                {"expr": f"time('{now}') - {hours * 3600_000}"},
                {"expr": f"time('{now}') + {hours * 3600_000}"},
            ]
        ),
    )
    y = alt.Y("zone:N", title=None)
    base = alt.Chart(alt.Data(values=rows))
    legend = alt.Legend(title=None, orient="top")
    points = base.mark_point(filled=True, size=160, strokeWidth=3).encode(
        x=x,
        y=y,
        shape=alt.Shape(
            "state:N", scale=alt.Scale(domain=STRIP_STATES, range=STRIP_SHAPES), legend=legend
        ),
        color=alt.Color(
            "state:N", scale=alt.Scale(domain=STRIP_STATES, range=STRIP_COLOURS), legend=legend
        ),
    )
    labels = (
        base.mark_text(dy=-16, fontSize=11, color=PAGE_INK)
        .encode(x=x, y=y, text=alt.Text("label:N"))
        .transform_calculate(label="datum.state + ' · ' + datum.readers")
    )
    now_rule = (
        alt.Chart(alt.Data(values=[{"at": now}]))
        .mark_rule(color=PAGE_INK, strokeDash=[4, 3])
        .encode(x=x)
    )
    now_text = (
        alt.Chart(alt.Data(values=[{"at": now, "label": "now"}]))
        .mark_text(color=PAGE_INK, dy=-6, baseline="bottom", fontSize=11)
        .encode(x=x, text="label:N", y=alt.value(0))
    )
    zones = sorted({row["zone"] for row in rows})
    chart = alt.layer(now_rule, now_text, points, labels).properties(
        width=WIDTH, height=alt.Step(46), title=f"The {hours * 2} hours around now, per time zone"
    )
    alt_text = f"Slots of the {hours * 2} hours around now: " + (
        "; ".join(
            f"{zone}: "
            + ", ".join(
                f"{r['local']} local {r['state']} ({r['readers']} readers)"
                for r in rows
                if r["zone"] == zone
            )
            for zone in zones
        )
        or "none"
    )
    return Picture(
        key=key,
        title="The day strip",
        caption=f"Each time zone's slots from {hours} hours ago to {hours} hours ahead: sent, "
        "failed, held, due, missed or skipped, and those to come, each with its readers (as "
        "the run counted them, or the zone's readers now for those not yet sent).",
        alt=alt_text + ".",
        spec=_theme(chart, PAGE_INK).to_dict(validate=False),
        columns=["Time zone", "Slot (UTC)", "Local", "State", "Readers", "Note"],
        rows=[
            [
                r["zone"],
                r["at"].replace("T", " ").rstrip("Z"),
                r["local"],
                r["state"],
                r["readers"],
                r["note"],
            ]
            for r in rows
        ],
        empty=f"No slot in the {hours * 2} hours around now.",
    )
