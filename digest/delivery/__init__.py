"""Delivery: freeze an edition's audience, send it in batches once, and record every recipient.

The ledger, the run record and the transports live here. May import the edition, the newsroom,
the core and the readers beside it; never feedback or the shells.

Modules: `ledger` (the delivery ledger), `lease` (one process at a time), `message` (headers
and MIME), `send` (a slot end to end), `holds` (editors' holds on a newsletter or a zone),
`slots` (each slot's outcome and each run), and
`transports/` (`base`, `outbox`, `sendgrid`).
"""
