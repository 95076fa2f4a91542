"""`python -m splitpipe` runs the CLI."""

from splitpipe.cli import entry

entry()
