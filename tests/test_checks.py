"""The checks an email meets before anyone sends it, each on a small email made to fail it."""

from __future__ import annotations

from digest.edition.checks import EmailParts, css_rules, has_errors, run_checks

GOOD_HTML = """<html><head><style>@media (max-width: 600px) { .c { width: 100% } }</style>
</head><body><h2><a href="https://news.test/a">Trams all night</a></h2>
<img src="https://news.test/a.jpg" alt="A tram at the depot at dusk">
<a href="https://news.test/u/preview">Unsubscribe</a></body></html>"""
GOOD_TEXT = "Trams all night\nhttps://news.test/a\n"


def parts(**changes) -> EmailParts:
    values = {
        "subject": "Test Daily: Trams all night",
        "preheader": "Trams all night, otters back in the estuary, and more.",
        "html": GOOD_HTML,
        "text": GOOD_TEXT,
        "story_links": ("https://news.test/a",),
    } | changes
    return EmailParts(**values)


def problems(**changes) -> list[tuple[str, str]]:
    return [(f.level, f.check) for f in run_checks(parts(**changes)) if f.level != "ok"]


def test_a_well_made_email_passes_every_check():
    assert problems() == []


def test_a_relative_or_http_link_is_an_error():
    html = GOOD_HTML.replace('https://news.test/a"', 'http://news.test/a"')
    assert problems(html=html) == [("error", "links")]
    assert problems(html=GOOD_HTML + '<a href="/archive">x</a>') == [("error", "links")]


def test_mailto_links_need_no_https():
    assert problems(html=GOOD_HTML + '<a href="mailto:desk@news.test">x</a>') == []


def test_an_image_without_alt_is_an_error_and_one_on_http_too():
    html = GOOD_HTML.replace(' alt="A tram at the depot at dusk"', "")
    assert problems(html=html) == [("error", "images")]
    html = GOOD_HTML.replace('src="https://news.test/a.jpg"', 'src="http://news.test/a.jpg"')
    assert problems(html=html) == [("error", "images")]


def test_an_alt_that_repeats_the_headline_next_to_it_is_a_warning():
    html = GOOD_HTML.replace("A tram at the depot at dusk", "Trams all night!")
    assert problems(html=html) == [("warning", "images")]


def test_an_empty_alt_marks_decoration_and_passes():
    assert problems(html=GOOD_HTML.replace("A tram at the depot at dusk", "")) == []


def test_a_leftover_placeholder_is_an_error():
    assert problems(text=GOOD_TEXT + "%%greeting_text%%") == [("error", "placeholders")]


def test_html_over_gmails_clip_is_an_error():
    html = GOOD_HTML.replace("</body>", "<p>" + "x" * 103 * 1024 + "</p></body>")
    assert problems(html=html) == [("error", "size")]


def test_a_style_block_over_16_kb_is_an_error():
    html = GOOD_HTML.replace("</style>", ".x{color:red}" * 1400 + "</style>")
    assert problems(html=html) == [("error", "style")]


def test_a_text_part_without_a_story_link_or_empty_is_an_error():
    assert problems(text="Trams all night\n") == [("error", "text")]
    assert problems(text="  \n") == [("error", "text")]


def test_long_subject_and_preheader_are_warnings():
    assert problems(subject="x" * 90, preheader="short") == [
        ("warning", "subject"),
        ("warning", "preheader"),
    ]
    assert problems(subject="") == [("error", "subject")]


def test_css_that_major_clients_ignore_is_named_with_the_clients():
    html = GOOD_HTML.replace("<h2>", '<h2 style="position:relative; display:flex">')
    findings = [f for f in run_checks(parts(html=html)) if f.check == "css"]
    assert [f.level for f in findings] == ["warning", "warning"]
    assert "position" in findings[0].message and "Outlook for Windows" in findings[0].message
    assert not has_errors(findings)


def test_every_entry_of_the_curated_css_table_names_clients_and_a_fallback():
    rules = css_rules()
    assert len(rules) >= 15
    assert all(rule.clients and rule.fallback and rule.what for rule in rules)


def test_dark_mode_css_is_an_enhancement_noted_not_a_warning():
    html = GOOD_HTML.replace(
        "</body>", "<style>@media (prefers-color-scheme: dark) { p { color: #eee } }</style></body>"
    )
    [css] = [f for f in run_checks(parts(html=html)) if f.check == "css"]
    assert css.level == "ok"
    assert "which show the email without it: fine" in css.message


def test_css_clients_drop_is_still_a_warning():
    html = GOOD_HTML.replace("<body>", '<body><div style="position: absolute">x</div>')
    [css] = [f for f in run_checks(parts(html=html)) if f.check == "css"]
    assert css.level == "warning"


def test_a_bad_image_names_the_story_it_is_in():
    html = GOOD_HTML.replace(
        "</body>", '<h2>Otters return</h2><img src="http://i.test/o.jpg" alt=""></body>'
    )
    [image] = [f for f in run_checks(parts(html=html)) if f.check == "images"]
    assert (image.level, image.story) == ("error", "Otters return")
    assert image.line().startswith("error: images (story 'Otters return'): Image http://")
