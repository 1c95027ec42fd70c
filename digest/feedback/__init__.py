"""Feedback: what came back from a send (SendGrid's Event Webhook) and the report of an edition.

May import delivery, readers, the edition, the newsroom and the core; never the shells.

Modules: `webhook` (the receiver), `events` (posts stored, then processed), `report`
(`digest report`).
"""
