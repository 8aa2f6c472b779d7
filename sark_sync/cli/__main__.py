"""``python -m sark_sync.cli``: the same command as ``sark-sync``."""

import sys

from ._main import main

sys.exit(main())
