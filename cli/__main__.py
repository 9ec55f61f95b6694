"""``python -m cli``: the same as the ``ave`` entry point."""

import sys

from cli.main import main

sys.exit(main())
