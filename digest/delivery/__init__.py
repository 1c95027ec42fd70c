"""Delivery: freeze an edition's audience, send it in batches once, and record every recipient.

The ledger, the run record and the transports live here. May import the edition, the newsroom,
the core and the readers beside it; never feedback or the shells.
"""
