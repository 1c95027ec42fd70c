"""The edition: select a variant's stories, render it once, check it, and keep it frozen.

May import the newsroom and the core; never delivery, readers, feedback or the shells.

Modules: `select` (the pure selection), `lift` (stories' impressions, clicks and
position-corrected lift at a moment, read from the feedback summaries), `render` (templates
and CSS, once per variant), `personalize` (per-reader placeholders), `checks` (an email's
checks), `gate` (those checks on a built edition: what holds a send), `edits` (an editor's
per-edition edits and their audit trail), `build` (build and keep an edition variant).
"""
