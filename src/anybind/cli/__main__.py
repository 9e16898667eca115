"""``python -m anybind.cli``."""

import sys

from anybind.cli import main

sys.exit(main())
