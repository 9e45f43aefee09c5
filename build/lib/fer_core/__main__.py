"""``python -m fer_core``: see :mod:`fer_core.cli`."""

import sys

from .cli import main

sys.exit(main())
