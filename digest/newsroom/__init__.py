"""The newsroom: stories read from feeds and files into the store, and the editors' pins and scores.

May import the core (the modules at the top of `digest/`) and nothing else of digest.

Modules: `ingest` (feeds and files into the store), `stories` (the story table).
"""
