"""`python -m digest` runs the command line."""

from .cli import cli

cli(prog_name="digest")
