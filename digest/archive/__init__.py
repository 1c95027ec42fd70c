"""The public archive: recipient-free web copies of sent editions, each newsletter's days, feeds.

`copies` turns a frozen edition into a web copy with nothing of any reader; `days` freezes
each newsletter's edition of a day (and hides or shows it); `pages` renders the archive's
pages, Atom feeds and sitemap as plain values; `site` serves them in `digest serve`
(validators, cache headers, 404/410 pages); `static` writes the same files for a static host.

May import delivery, readers, the edition, the newsroom and the core; never the shells.
"""
