"""``python -m sim`` is the ``vmapsim`` command."""

import sys

from .cli import main

sys.exit(main())
