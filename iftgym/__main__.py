"""``python -m iftgym``: the command line (also what ``torchrun -m iftgym`` runs)."""

import sys

from iftgym.cli import main

sys.exit(main())
