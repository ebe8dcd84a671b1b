"""``python -m sccosf_ros.cli.demo`` moved with the generators: ``make demo``, ``sccosf-demo`` or
``python -m sccosf_synth.demo`` (same options). The runtime package never imports the generators."""

from __future__ import annotations

import sys

MOVED = (
    "sccosf_ros.cli.demo: error: the demo moved to the generator package: run 'make demo', "
    "'sccosf-demo --out DIR' or 'python -m sccosf_synth.demo --out DIR' (same options)"
)


def main() -> int:
    print(MOVED, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
