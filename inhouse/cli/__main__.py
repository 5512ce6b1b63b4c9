"""``python -m inhouse.cli``."""

import sys

from inhouse.cli import main

sys.exit(main())
