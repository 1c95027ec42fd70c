"""The edition: select a variant's stories, render it once, check it, and keep it frozen.

May import the newsroom and the core; never delivery, readers, feedback or the shells.
"""
