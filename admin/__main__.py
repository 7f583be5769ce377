"""``python -m admin``: ``runs``/``export`` in :mod:`admin.runs`, everything else in :mod:`admin.cli`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from admin.cli import main


def route(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m admin``: ``runs ...`` and ``export ...`` by ``admin.runs``, else ``admin.cli``."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] in (["runs"], ["export"]):
        from admin import runs

        return runs.main(words)
    return main(words)


if __name__ == "__main__":
    sys.exit(route())
