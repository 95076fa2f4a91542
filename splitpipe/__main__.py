"""`python -m splitpipe` runs the CLI."""

import sys

from splitpipe.cli import main

sys.exit(main())
