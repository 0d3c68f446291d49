"""``python3 -m didmark ...`` runs the command line tool, as the ``didmark`` script does."""

import sys

from ._cli import main

sys.exit(main())
