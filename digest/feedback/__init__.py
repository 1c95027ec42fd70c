"""Feedback: what came back from a send (SendGrid's Event Webhook) and the report of an edition.

May import delivery, readers, the edition, the newsroom and the core; never the shells.

Modules: `webhook` (the receiver), `events` (posts stored, then processed, with per-story click
summaries and each reader's last human open and click), `machines` (the one rule of which
clicks are a link scanner's), `report` (`digest report`), `sunset` (the cold asked once, then
lapsed), `list_health` (`digest report --list`).
"""
