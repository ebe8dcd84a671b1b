"""``python -m sccosf_train.export`` was renamed ``python -m sccosf_train.half_precision`` (same options).

Kept only to say so, for commands written down before the rename.
"""

from __future__ import annotations

import sys

MOVED = "sccosf_train.export: error: renamed: run 'python -m sccosf_train.half_precision ...' (same options)"


def main() -> int:
    print(MOVED, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
