"""SC-CoSF checkpoint format: safetensors weights plus one JSON metadata record.

Why safetensors: a checkpoint is data that travels between machines, and ``torch.load`` on an untrusted
pickle can run arbitrary code. A safetensors file is a length-prefixed JSON header followed by raw tensor
bytes, so reading it never executes anything. The header's ``__metadata__`` is a string→string map; we
store everything the runtime needs to rebuild the network and label its output (preset, full model config,
class names, palette, input normalisation, training summary) as JSON under a single key, ``sccosf``.

Every way a checkpoint can be unusable (missing, not safetensors, truncated, no metadata, a newer format,
weights that do not fit the architecture) ends in one :class:`CheckpointError` with a message that names
the file and says what to do, never in a stack trace from deep inside torch.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sccosf_ros import __version__
from sccosf_ros.errors import CheckpointError

if TYPE_CHECKING:  # torch loads with the weights, not with the format (an .onnx file needs no torch)
    import torch

FORMAT_VERSION = 1
"""Bumped whenever a reader of the previous version would misread a new file."""

METADATA_KEY = "sccosf"
"""The one ``__metadata__`` key holding our JSON record."""

DEFAULT_INPUT_NORM: dict[str, Any] = {
    "rgb": "uint8 RGB (not BGR) divided by 255 -> float in [0, 1], shape (B, 3, H, W)",
    "thermal": "one channel in [0, 1] (raw counts normalised by imaging.thermal.ThermalNormalizer), "
    "shape (B, 1, H, W), resampled onto the RGB geometry",
}


@dataclass
class CheckpointMeta:
    """Everything besides the weights that is needed to run and interpret a checkpoint."""

    preset: str
    config: dict[str, Any]
    num_classes: int
    class_names: list[str]
    palette: list[tuple[int, int, int]]
    input_norm: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_INPUT_NORM))
    training: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    package_version: str = __version__
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.num_classes = int(self.num_classes)
        self.class_names = [str(n) for n in self.class_names]
        self.palette = [tuple(int(c) for c in rgb) for rgb in self.palette]  # type: ignore[misc]
        problems = []
        if not 1 <= self.num_classes <= 256:  # masks are mono8
            problems.append(f"num_classes must be in 1..256, got {self.num_classes}")
        if len(self.class_names) != self.num_classes:
            problems.append(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if len(self.palette) != self.num_classes:
            problems.append(f"{len(self.palette)} palette colours for {self.num_classes} classes")
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in self.palette):
            problems.append("palette entries must be three integers in 0..255")
        for name in ("config", "input_norm", "training"):
            value = getattr(self, name)
            if not isinstance(value, dict):
                problems.append(f"{name} must be a dict")
                continue
            # Canonical JSON form (tuples -> lists) so a loaded meta equals the saved one. The free-form
            # dicts stringify what JSON lacks (paths, numpy scalars): a summary must never fail a save.
            lenient = None if name == "config" else str
            try:
                setattr(self, name, json.loads(json.dumps(value, default=lenient)))
            except (TypeError, ValueError) as exc:
                problems.append(f"{name} is not JSON-serialisable ({exc})")
        if problems:
            raise ValueError("invalid checkpoint metadata: " + "; ".join(problems))

    @classmethod
    def for_model(
        cls,
        model: torch.nn.Module,
        preset: str | None = None,
        class_names: list[str] | None = None,
        palette: list[tuple[int, int, int]] | None = None,
        training: dict[str, Any] | None = None,
        input_norm: dict[str, Any] | None = None,
    ) -> CheckpointMeta:
        """Describe ``model`` (an SCCoSF); names and palette default to the MSRS ones."""
        cfg = getattr(model, "config", None)
        config = asdict(cfg) if is_dataclass(cfg) and not isinstance(cfg, type) else dict(cfg or {})
        num_classes = int(model.num_classes)  # type: ignore[arg-type]
        if class_names is None or palette is None:
            from sccosf_ros.imaging.palette import MSRS_CLASSES, MSRS_PALETTE

            if num_classes != len(MSRS_CLASSES):
                raise ValueError(f"model has {num_classes} classes: pass class_names and palette explicitly")
            class_names = list(MSRS_CLASSES) if class_names is None else class_names
            palette = [tuple(c) for c in MSRS_PALETTE] if palette is None else palette  # type: ignore[misc]
        return cls(
            preset=preset or str(config.get("name", config.get("preset", "custom"))),
            config=config,
            num_classes=num_classes,
            class_names=list(class_names),
            palette=list(palette),
            input_norm=dict(DEFAULT_INPUT_NORM) if input_norm is None else dict(input_norm),
            training=dict(training or {}),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, source: str = "checkpoint") -> CheckpointMeta:
        """Parse and validate; unknown keys from a newer minor writer are ignored."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{source}: metadata is not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise CheckpointError(f"{source}: metadata is not a JSON object")
        version = raw.get("format_version")
        if not isinstance(version, int):
            raise CheckpointError(f"{source}: metadata has no integer format_version")
        if version > FORMAT_VERSION or version < 1:
            raise CheckpointError(
                f"{source}: checkpoint format version {version} is not supported by sccosf_ros "
                f"{__version__} (reads version {FORMAT_VERSION}); upgrade sccosf_ros or re-export the model"
            )
        known = {f.name for f in fields(cls)}
        required = {"preset", "config", "num_classes", "class_names", "palette"}
        missing = sorted(required - raw.keys())
        if missing:
            raise CheckpointError(f"{source}: metadata lacks {', '.join(missing)}")
        try:
            return cls(**{k: v for k, v in raw.items() if k in known})
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: {exc}") from None


def _tensors_for_saving(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detach, move to CPU and un-share storage: safetensors refuses tensors that alias each other."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for key, tensor in state.items():
        t = tensor.detach().to("cpu").contiguous()
        ident = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if ident in seen or t.numel() != t.untyped_storage().nbytes() // max(t.element_size(), 1):
            t = t.clone()
        seen.add(ident)
        out[key] = t
    return out


def save_checkpoint(
    path: str | Path, model: torch.nn.Module | Mapping[str, torch.Tensor], meta: CheckpointMeta
) -> Path:
    """Write weights and metadata atomically (temp file + rename), so a crash never leaves half a file."""
    from safetensors.torch import save_file

    path = Path(path)
    state = model.state_dict() if hasattr(model, "state_dict") else model
    tensors = _tensors_for_saving(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={METADATA_KEY: meta.to_json()})
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; an installed model must be readable by every user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _open_failure(path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(
        f"{path}: not a readable safetensors checkpoint (corrupt, truncated or another format: {exc})"
    )


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint path is not a file")
    return path


def read_checkpoint_meta(path: str | Path) -> CheckpointMeta:
    """Read only the header (cheap: no tensor bytes are touched)."""
    from safetensors import safe_open

    path = _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as exc:  # SafetensorError, OSError: all mean the same to the user
        raise _open_failure(path, exc) from None
    return _meta_from_header(path, header)


def _meta_from_header(path: Path, header: Mapping[str, str]) -> CheckpointMeta:
    if METADATA_KEY not in header:
        raise CheckpointError(
            f"{path}: safetensors file has no '{METADATA_KEY}' metadata; it was not written by "
            "sccosf_ros.checkpoint.save_checkpoint"
        )
    return CheckpointMeta.from_json(header[METADATA_KEY], source=str(path))


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """Read weights (on CPU) and metadata; never unpickles."""
    from safetensors import safe_open

    path = _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            meta = _meta_from_header(path, header)
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a Mapping)
    except CheckpointError:
        raise
    except Exception as exc:
        raise _open_failure(path, exc) from None
    return state, meta


def check_state_dict(
    model: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str = "checkpoint",
    limit: int = 5,
    missing_ok: bool = False,
) -> list[str]:
    """Raise a readable CheckpointError unless ``state`` fits ``model`` exactly (keys and shapes).

    With ``missing_ok`` (fine-tuning a model that has gained a module) keys the checkpoint lacks are
    returned instead of refused; unexpected keys and shape mismatches are still errors.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    absent: list[str] = []
    if missing_ok:
        absent, missing = missing, []
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or shapes):
        return absent

    def few(items: list[str]) -> str:
        more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
        return ", ".join(items[:limit]) + more

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {few(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {few(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches: {few(shapes)}")
    raise CheckpointError(
        f"{source}: weights do not match the architecture described in its metadata ("
        + "; ".join(parts)
        + "). Was the file written for another preset or num_classes?"
    )


def build_from_checkpoint(path: str | Path) -> tuple[torch.nn.Module, CheckpointMeta]:
    """Rebuild the network from the metadata's config and load the weights into it (CPU, eval mode)."""
    from sccosf_ros.model import ModelConfig, build_model_from_config

    state, meta = load_checkpoint(path)
    try:
        model = build_model_from_config(ModelConfig(**meta.config), meta.num_classes)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: metadata config cannot build a model ({exc})") from None
    check_state_dict(model, state, source=str(path))
    model.load_state_dict(state, strict=True)
    return model.eval(), meta
