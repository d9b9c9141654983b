"""``python -m sim`` is the ``vmapsim`` command."""

import sys

from sim.cli import main

sys.exit(main())
