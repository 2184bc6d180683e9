"""``python -m latentpath``, as ``torchrun -m latentpath`` starts it on each process."""

import sys

from latentpath.cli import main

sys.exit(main())
