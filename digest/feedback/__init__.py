"""Feedback: what came back from a send (SendGrid's Event Webhook) and the report of an edition.

May import delivery, readers, the edition, the newsroom and the core; never the shells.

Modules: `webhook` (the receiver), `events` (posts stored, then processed, with per-story click
summaries and each reader's last human open and click), `machines` (the one rule of which opens and
clicks are a link scanner's), `report` (`digest report`), `figures` (the numbers behind the
report's pictures), `charts` (those pictures, drawn on the server), `document` (the report or
the status as one HTML page), `mailing` (the report mailed to the editors the morning after
each edition), `reader` (one reader's editions and what came of each), `sunset` (the cold
asked once, then lapsed), `list_health` (`digest report --list`).
"""
