"""python -m capgate: the command line."""

import sys

from capgate.cli import main

sys.exit(main())
