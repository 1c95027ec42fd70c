"""The edition: select a variant's stories, render it once, check it, and keep it frozen.

May import the newsroom and the core; never delivery, readers, feedback or the shells.

Modules: `select` (the pure selection), `render` (templates and CSS, once per variant),
`personalize` (per-reader placeholders), `checks` (an email's checks), `build` (build and keep
an edition variant).
"""
