"""The pairs ``sccosf-adapt`` learns from: a user's two image folders or a bag, as one registered folder.

Why one folder: the trainer reads registered, same-size pairs in the MSRS layout (``ir/``, ``vi/``), and a
folder written once makes the adaptation resumable (a second run finds the pairs done) and its inputs
inspectable. Frames go through the same conversions as at run time: a bag's messages through the node's
pipeline (:class:`sccosf_ros.pipeline.PairProcessor`: decoding, thermal normalisation) and its pairing
(:class:`sccosf_ros.pairing.ApproximateTimePairer`); folder images through the trainer's readers (16-bit
thermal stretched by its percentiles). The thermal frame is then put on the RGB grid (the homography when
given, else a resize), as the engine would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sccosf_ros import bags
from sccosf_ros.errors import InputError
from sccosf_ros.imaging.resize import validate_homography, warp_thermal_to_rgb
from sccosf_ros.pairing import ApproximateTimePairer
from sccosf_ros.pipeline import SYNC_QUEUE_SIZE, SYNC_SLOP_S, BadInputError, PairProcessor, ThermalSettings
from sccosf_train.dataset import list_images, read_thermal, read_visible

MAX_ASPECT_FACTOR = 1.5  # the pipeline's limit for pairs that are resized, not warped


class AdaptInputError(InputError):
    """The input cannot give pairs to adapt on (no pairs, unreadable frames, sizes that cannot match)."""


@dataclass(frozen=True)
class PairSource:
    """Where the pairs come from: ``rgb``/``thermal`` folders, or a ``bag`` with its two topics."""

    rgb: str | None = None
    thermal: str | None = None
    bag: str | None = None
    rgb_topic: str = "/camera/rgb/image_raw"
    thermal_topic: str = "/camera/thermal/image_raw"
    homography: tuple[float, ...] | None = None
    max_pairs: int = 200

    def __post_init__(self) -> None:
        if (self.bag is None) == (self.rgb is None or self.thermal is None):
            raise AdaptInputError("give either --rgb DIR and --thermal DIR, or a BAG")
        if self.max_pairs < 2:
            raise AdaptInputError(f"--max-pairs must be at least 2, got {self.max_pairs}")
        if self.homography is not None:
            validate_homography(np.asarray(self.homography, np.float64).reshape(3, 3))


def parse_homography(text: str | None) -> tuple[float, ...] | None:
    """``"h11,...,h33"`` (9 numbers, thermal pixel -> RGB pixel, as the node's parameter) or None."""
    if not text:
        return None
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise AdaptInputError(f"--homography must be 9 numbers, got {text!r}") from None
    if len(values) != 9:
        raise AdaptInputError(f"--homography must be 9 numbers, got {len(values)}")
    return values


def _on_rgb_grid(
    rgb: np.ndarray, thermal: np.ndarray, homography: np.ndarray | None, name: str
) -> np.ndarray:
    """uint8 thermal registered onto the RGB frame's pixel grid."""
    if homography is None and thermal.shape[:2] != rgb.shape[:2]:
        ar = (rgb.shape[1] / rgb.shape[0], thermal.shape[1] / thermal.shape[0])
        if max(ar) / min(ar) > MAX_ASPECT_FACTOR:
            raise AdaptInputError(
                f"{name}: thermal {thermal.shape[1]}x{thermal.shape[0]} and rgb {rgb.shape[1]}x"
                f"{rgb.shape[0]} differ in aspect ratio: pass --homography (sccosf-register finds it)"
            )
    return warp_thermal_to_rgb(thermal, rgb.shape, homography)


def _spread(items: Sequence[Any], n: int) -> list[Any]:
    """At most ``n`` items evenly spread over the sequence (first and last kept)."""
    if len(items) <= n:
        return list(items)
    idx = np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))
    return [items[i] for i in idx]


def _folder_pairs(src: PairSource) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    rgb_dir, th_dir = Path(src.rgb or ""), Path(src.thermal or "")
    for d in (rgb_dir, th_dir):
        if not d.is_dir():
            raise AdaptInputError(f"{d} is not a folder")
    rgb_files, th_files = list_images(rgb_dir), list_images(th_dir)
    names = sorted(rgb_files.keys() & th_files.keys())
    if len(names) < 2:
        raise AdaptInputError(
            f"{rgb_dir} and {th_dir} share {len(names)} image name(s); pairs are matched by file name"
        )
    for name in _spread(names, src.max_pairs):
        yield name, read_visible(rgb_files[name]), read_thermal(th_files[name])


def _bag_pairs(src: PairSource) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Every ``stride``-th pair the node's synchroniser would form, converted as the node converts it."""
    info = bags.bag_info(src.bag or "")
    counts = [info.topic(t).count for t in (src.rgb_topic, src.thermal_topic)]  # BagError when absent
    stride = max(1, int(np.ceil(min(counts) / src.max_pairs)))
    compressed = "CompressedImage" in info.topic(src.rgb_topic).msgtype
    processor = PairProcessor(_NoEngine(), ThermalSettings().normalizer(), np.zeros((1, 3), np.uint8), set(),
                              has_homography=src.homography is not None, compressed=compressed)  # fmt: skip
    pairer = ApproximateTimePairer(SYNC_QUEUE_SIZE, SYNC_SLOP_S)
    formed = 0
    for raw in bags.read_raw(src.bag or "", [src.rgb_topic, src.thermal_topic]):
        msg = bags.TYPESTORE.deserialize_cdr(raw.data, raw.msgtype)
        stream = "rgb" if raw.topic == src.rgb_topic else "thermal"
        for pair in pairer.add(stream, bags.stamp_to_ns(msg.header.stamp), msg):
            formed += 1
            if (formed - 1) % stride:
                continue
            try:
                rgb, thermal, _ = processor.prepare(pair.rgb, pair.thermal)
            except BadInputError:
                continue  # a bad frame is skipped, as the node skips it
            gray = np.clip(np.rint(thermal * 255.0), 0, 255).astype(np.uint8)
            yield f"{pair.rgb_stamp_ns:019d}", rgb, gray


class _NoEngine:
    """PairProcessor wants an engine; collecting pairs never runs one."""

    def infer(self, rgb: np.ndarray, thermal: np.ndarray) -> Any:
        raise RuntimeError("no inference while collecting pairs")

    def close(self) -> None:
        return None


def collect_pairs(src: PairSource, folder: Path) -> list[str]:
    """Write the pairs to ``folder/{vi,ir}/NAME.png`` once (``folder/pairs.json`` records the source; a second
    call with the same source reuses them) and return their names in order."""
    record = folder / "pairs.json"
    spec = asdict(src)
    if record.is_file():
        done = json.loads(record.read_text())
        if done.get("source") == json.loads(json.dumps(spec)):
            return list(done["names"])
    for sub in ("vi", "ir"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    homography = None if src.homography is None else np.asarray(src.homography, np.float64).reshape(3, 3)
    pairs = _bag_pairs(src) if src.bag else _folder_pairs(src)
    names = []
    for name, rgb, thermal in pairs:
        th = _on_rgb_grid(rgb, thermal, homography, name)
        ok = cv2.imwrite(str(folder / "vi" / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        ok &= cv2.imwrite(str(folder / "ir" / f"{name}.png"), th)
        if not ok:
            raise OSError(f"cannot write pair {name} into {folder}")
        names.append(name)
    if len(names) < 2:
        raise AdaptInputError(f"only {len(names)} usable pair(s) in the input; at least 2 are needed")
    record.write_text(json.dumps({"source": spec, "names": names}, indent=1))
    return names
