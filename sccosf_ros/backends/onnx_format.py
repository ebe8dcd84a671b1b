"""The ONNX file format of sccosf_ros: what an exported file carries, where exports are cached, and the
fingerprints that say when a cached export is stale.

Read by the ONNX Runtime backend (:mod:`.ort_backend`, which needs only onnxruntime and NumPy to run a file)
and written by the exporter (:mod:`.onnx_exporter`, which needs torch, onnx and onnxscript); both import
this module, it imports neither.

Metadata (``metadata_props``): ``sccosf`` — the checkpoint's JSON record (class names, palette, config);
``sccosf_onnx`` — :class:`ExportInfo` as JSON (size, batch, refine flag, opset, source checksum, the
export-time check against PyTorch, and for an INT8 graph its precision and quantisation record).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sccosf_ros import __version__
from sccosf_ros.checkpoint import METADATA_KEY, CheckpointMeta
from sccosf_ros.errors import CheckpointError

DEFAULT_OPSET = 18
PRECISIONS = ("fp32", "int8")
"""What an exported graph computes in: float32, or INT8 (QDQ, from :mod:`.onnx_int8`)."""
EXPORT_KEY = "sccosf_onnx"
EXPORT_FORMAT_VERSION = 1
CACHE_ENV = "SCCOSF_ONNX_CACHE"

_SOURCES = (  # the code whose change makes a cached export stale
    "model/__init__.py",
    "model/cfm.py",
    "model/color.py",
    "model/config.py",
    "model/decoders.py",
    "model/encoder.py",
    "model/sccosf.py",
    "model/ss2d.py",
    "scan/__init__.py",
    "scan/chunked.py",
    "backends/torch_backend.py",
    "backends/onnx_exporter.py",
)
_PACKAGE_DIR = Path(__file__).resolve().parents[1]


@dataclass
class ExportInfo:
    """How an ONNX file was made; stored as JSON under ``sccosf_onnx`` in its metadata."""

    height: int
    width: int
    batch: int | None
    """Fixed batch size, or None for a dynamic batch dimension."""
    seg_refine: bool
    """Whether the graph runs the segmentation refinement."""
    has_refine: bool
    """Whether the source model has one at all."""
    opset: int
    source: str = ""
    source_sha256: str = ""
    torch_version: str = ""
    package_version: str = __version__
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    export_s: float | None = None
    check: dict[str, Any] = field(default_factory=dict)
    """The float graph against PyTorch at export time (:func:`.onnx_exporter.compare_with_torch`)."""
    precision: str = "fp32"
    """``fp32``, or ``int8`` for a quantised graph (:mod:`.onnx_int8`); older files have none: fp32."""
    quantization: dict[str, Any] = field(default_factory=dict)
    """For ``int8``: the recipe, the calibration pairs and their provenance, the check against float."""
    format_version: int = EXPORT_FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, source: str = "onnx model") -> ExportInfo:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{source}: '{EXPORT_KEY}' metadata is not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise CheckpointError(f"{source}: '{EXPORT_KEY}' metadata is not a JSON object")
        version = raw.get("format_version")
        if not isinstance(version, int) or not 1 <= version <= EXPORT_FORMAT_VERSION:
            raise CheckpointError(
                f"{source}: ONNX export format version {version!r} is not supported by sccosf_ros "
                f"{__version__} (reads {EXPORT_FORMAT_VERSION}); re-export with sccosf-export"
            )
        known = {f.name for f in fields(cls)}
        try:
            info = cls(**{k: v for k, v in raw.items() if k in known})
        except TypeError as exc:
            raise CheckpointError(f"{source}: '{EXPORT_KEY}' metadata incomplete ({exc})") from None
        if not (
            isinstance(info.height, int) and isinstance(info.width, int) and info.height > 0 < info.width
        ):
            raise CheckpointError(f"{source}: '{EXPORT_KEY}' metadata has no valid height/width")
        if info.precision not in PRECISIONS:
            raise CheckpointError(
                f"{source}: ONNX graph precision {info.precision!r} is not one sccosf_ros {__version__} "
                f"runs ({', '.join(PRECISIONS)}); re-export with sccosf-export"
            )
        return info


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_fingerprint() -> str:
    """Hash of the network and export code and the exporter's versions (torch, onnx, onnxscript): a change
    of any of them invalidates cached exports."""
    from importlib.metadata import PackageNotFoundError, version

    digest = hashlib.sha256()
    for dist in ("torch", "onnx", "onnxscript"):
        try:
            digest.update(f"{dist}={version(dist)};".encode())
        except PackageNotFoundError:
            digest.update(f"{dist}=-;".encode())
    for rel in _SOURCES:
        p = _PACKAGE_DIR / rel
        digest.update(rel.encode())
        digest.update(p.read_bytes() if p.is_file() else b"-")
    return digest.hexdigest()[:10]


def onnx_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$SCCOSF_ONNX_CACHE``, else ``$XDG_CACHE_HOME/sccosf_ros/onnx`` (~/.cache)."""
    if cache_dir:
        return Path(cache_dir)
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "sccosf_ros" / "onnx"


def cached_export_path(
    checkpoint: str | Path,
    height: int,
    width: int,
    seg_refine: bool,
    cache_dir: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    sha256: str | None = None,
) -> Path:
    """Where the cache keeps the export of ``checkpoint`` (by content, not name) for one frame size."""
    digest = (sha256 or file_sha256(checkpoint))[:16]
    mode = "refine" if seg_refine else "coarse"
    name = f"{Path(checkpoint).stem}-{digest}-{height}x{width}-{mode}-b1-op{opset}-{code_fingerprint()}.onnx"
    return onnx_cache_dir(cache_dir) / name


def read_onnx_metadata(custom: dict[str, str], source: str) -> tuple[CheckpointMeta, ExportInfo]:
    """(CheckpointMeta, ExportInfo) from an exported file's metadata_props."""
    for key in (METADATA_KEY, EXPORT_KEY):
        if key not in custom:
            raise CheckpointError(
                f"{source}: ONNX model has no '{key}' metadata; it was not written by sccosf-export "
                "(export it with: sccosf-export --onnx OUT.onnx --checkpoint MODEL.safetensors)"
            )
    return CheckpointMeta.from_json(custom[METADATA_KEY], source=source), ExportInfo.from_json(
        custom[EXPORT_KEY], source=source
    )


def module_scopes(node: Any) -> list[str]:
    """The module paths (``model.encoder.features.3`` ...) the exporter recorded for a graph node, outermost
    first, from its ``pkg.torch.onnx.name_scopes`` metadata; [] for nodes without one (added later)."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = json.loads(prop.value.replace("'", '"'))
            except json.JSONDecodeError:
                return []
            return [s for s in scopes if isinstance(s, str) and (s == "model" or s.startswith("model."))]
    return []


def metadata_entries(meta: CheckpointMeta, info: ExportInfo) -> dict[str, str]:
    """The ``metadata_props`` an exported file carries (what :func:`read_onnx_metadata` reads back)."""
    return {METADATA_KEY: meta.to_json(), EXPORT_KEY: info.to_json()}
