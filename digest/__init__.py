"""digest: build a daily newsletter digest from a story store and send it once to every reader."""

__version__ = "0.1.0"
