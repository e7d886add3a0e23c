"""``python -m nbworkers``: the command line (see ``nbworkers.cli``)."""

import sys

from .cli import main

sys.exit(main())
