"""``python -m avatarsync`` = the ``avatarsync`` command."""

from .cli import run

run()
