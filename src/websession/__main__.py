"""``python -m websession``: the ``websession`` command line."""

import sys

from .cli import main

sys.exit(main())
