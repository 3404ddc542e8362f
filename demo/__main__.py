"""``python -m demo``: serve the login demo until Ctrl-C."""

import sys

from .app import main

sys.exit(main())
