"""How the benchmarks hand over their figures: JSON on stdout, and the same text to ``--out`` if given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit(figures: dict[str, Any], out: Path | None) -> None:
    text = json.dumps(figures, indent=2)
    print(text)
    if out:
        out.write_text(text + "\n")
