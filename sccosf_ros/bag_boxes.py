"""Box scores for bag evaluation: which box file belongs to which frame, and the per-frame scoring.

Why a mapping at all: a bag frame carries a header stamp, a box file carries a name (``00040N.txt``). Nothing
in a camera bag ties them together, so the evaluator must be told, and a wrong guess would silently score
every frame against another scene's boxes. Sources, most explicit first (``--box-names``):

* ``FILE.json``: ``{"<RGB header stamp in ns>": "NAME", ...}``; frames whose stamp is not listed are not
  box-scored (and counted);
* a text file (one name a line, ``#`` comments) or an image folder (its sorted file stems, e.g. the
  ``--rgb`` folder given to ``sccosf-bag from-folder``): the k-th name belongs to the k-th distinct RGB
  stamp in time order, which is how ``from-folder`` writes pairs (sorted stems, one stamp each);
* ``sorted``: the sorted names of the box folder itself, in the same order (right when the bag was made from
  exactly the boxed pairs, e.g. all 241 MSRS pairs);
* nothing: the bag's own record, ``custom_data["sccosf.frame_names"]`` in ``metadata.yaml`` (the JSON
  mapping above), which ``from-folder`` can write; without it the evaluator stops and says what to pass.

Ordered lists must have exactly as many names as the bag has distinct RGB stamps; otherwise it is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sccosf_ros import bags
from sccosf_ros.errors import ConfigError
from sccosf_ros.metrics.boxes import BoxDir, BoxScore

FRAME_NAMES_KEY = bags.FRAME_NAMES_KEY  # bag metadata custom_data key: JSON {stamp_ns: name}
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class FrameNameError(ConfigError):
    """Frames cannot be tied to box files; the message says what to pass instead."""


def _metadata_path(bag: str | Path) -> Path:
    p = Path(bag)
    return (p if p.is_dir() else p.parent) / "metadata.yaml"


def bag_frame_names(bag: str | Path) -> dict[int, str] | None:
    """The stamp -> name record in the bag's metadata (``custom_data``), or None when there is none."""
    path = _metadata_path(bag)
    if not path.is_file():
        return None
    info = (yaml.safe_load(path.read_text()) or {}).get("rosbag2_bagfile_information", {})
    text = (info.get("custom_data") or {}).get(FRAME_NAMES_KEY)
    return None if text is None else _mapping_from_json(json.loads(text), f"{path} custom_data")


def _mapping_from_json(data: Any, source: str) -> dict[int, str]:
    if not isinstance(data, dict):
        raise FrameNameError(f"{source}: expected a JSON object {{stamp_ns: name}}")
    try:
        return {int(k): Path(str(v)).stem for k, v in data.items()}
    except ValueError:
        raise FrameNameError(f"{source}: keys must be RGB header stamps in nanoseconds (integers)") from None


def rgb_stamps(bag: str | Path, topic: str) -> list[int]:
    """Distinct header stamps of ``topic`` in time order."""
    stamps = set()
    for raw in bags.read_raw(bag, [topic]):
        msg = bags.TYPESTORE.deserialize_cdr(raw.data, raw.msgtype)
        stamps.add(bags.stamp_to_ns(msg.header.stamp))
    return sorted(stamps)


def _ordered_names(spec: str, boxes: BoxDir) -> tuple[list[str], str] | None:
    if spec == "sorted":
        return boxes.names(), f"sorted names of {boxes.root}"
    path = Path(spec)
    if path.is_dir():
        stems = sorted({p.stem for p in path.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_EXTS})
        return stems, f"sorted image names of {path}"
    if path.is_file() and path.suffix.lower() != ".json":
        lines = (s.strip() for s in path.read_text().splitlines())
        return [Path(s).stem for s in lines if s and not s.startswith("#")], f"names listed in {path}"
    return None


def load_frame_names(
    spec: str | Path | None, bag: str | Path, rgb_topic: str, boxes: BoxDir
) -> tuple[dict[int, str], str]:
    """``{RGB stamp ns: box file name}`` and a line saying where it came from (see the module docstring)."""
    if spec is None:
        names = bag_frame_names(bag)
        if names is None:
            raise FrameNameError(
                f"{bag} does not record which image each frame was (no custom_data '{FRAME_NAMES_KEY}'): "
                "pass --box-names with a JSON {stamp_ns: name} file, a names file, the image folder the bag "
                "was made from, or 'sorted' (the box folder's names in order)"
            )
        return names, f"the bag's metadata ({FRAME_NAMES_KEY})"
    spec = str(spec)
    ordered = _ordered_names(spec, boxes)
    if ordered is None:
        path = Path(spec)
        if not path.is_file():
            raise FrameNameError(f"--box-names {spec}: no such file or folder (or 'sorted')")
        return _mapping_from_json(json.loads(path.read_text()), str(path)), f"stamp -> name map {path}"
    names, source = ordered
    stamps = rgb_stamps(bag, rgb_topic)
    if len(names) != len(stamps):
        raise FrameNameError(
            f"{source}: {len(names)} names but the bag has {len(stamps)} distinct RGB stamps on {rgb_topic}; "
            "an ordered list must name every frame in time order (or pass a JSON {stamp_ns: name} map)"
        )
    return dict(zip(stamps, names, strict=True)), f"{source}, in RGB stamp order"


@dataclass
class BoxFrameScorer:
    """Scores each evaluated frame's mask against the boxes of the frame's name (the evaluator's helper)."""

    boxes: BoxDir
    names: dict[int, str]
    source: str = ""
    score: BoxScore = field(default_factory=BoxScore)
    unnamed: int = 0
    unannotated: list[str] = field(default_factory=list)

    def add(self, stamp_ns: int, mask: np.ndarray, record: dict[str, Any]) -> None:
        """Score one mask; writes ``box_name`` (and ``box`` counts when scored) into the frame record."""
        name = self.names.get(int(stamp_ns))
        record["box_name"] = name
        if name is None:
            self.unnamed += 1
            return
        frame_boxes = self.boxes.boxes(name, mask.shape[1], mask.shape[0])
        if frame_boxes is None:
            self.unannotated.append(name)
            return
        record["box"] = self.score.update(mask, frame_boxes)

    def summary(self) -> dict[str, Any]:
        return {
            **self.score.result(),
            "boxes": str(self.boxes.root),
            "variants": list(self.boxes.variants),
            "names_from": self.source,
            "frames_without_name": self.unnamed,
            "frames_without_box_file": len(self.unannotated),
            "definition": "docs/metrics.md, 'Box score'",
        }


__all__ = [
    "FRAME_NAMES_KEY",
    "BoxFrameScorer",
    "FrameNameError",
    "bag_frame_names",
    "load_frame_names",
    "rgb_stamps",
]
