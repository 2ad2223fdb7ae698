"""``python -m mlmi`` is the ``mlmi`` command."""

import sys

from .cli import main

sys.exit(main())
