"""Entry point of ``python -m admin``; everything lives in :mod:`admin.cli`."""

from __future__ import annotations

import sys

from admin.cli import main

if __name__ == "__main__":
    sys.exit(main())
