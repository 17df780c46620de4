"""``python -m avatarsync`` = the ``avatarsync`` command."""

import sys

from .cli import main

sys.exit(main())
