"""``python -m shiftpool.cli``: the ``shiftpool`` command."""

import sys

from shiftpool.cli import main

sys.exit(main())
