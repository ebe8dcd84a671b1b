"""Model configuration: one plain dataclass per preset, so a checkpoint can carry ``asdict(cfg)``."""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["PRESETS", "ModelConfig"]


@dataclass
class ModelConfig:
    """Hyper-parameters of SC-CoSF. Per-level tuples are ordered by stride (4, 8, 16, 32).

    ``lrb_pool`` is the side of Sc-LRB's pooled key/value grid per level: attention costs
    hw·2·pool² per level, so the fine levels get fewer tokens; ``lrb_query_stride`` computes that
    (smooth, global) context on a coarser query grid and upsamples it. ``internal_scale`` lets the CPU
    preset run the network below the input resolution while ReAW still fuses the full-resolution sources
    (see ``docs/architecture.md``). ``reaw_radius`` is the box radius (in input pixels) of ReAW's
    base/detail split of the full-resolution sources. ``seg_refine`` is the width of the segmentation
    refinement at the network's input resolution (:class:`sccosf_ros.model.decoders.SegRefine`); 0 leaves
    it out, which is what checkpoints written before it existed describe. ``min_internal_pixels`` raises the
    scale of frames so small that ``internal_scale`` would leave the network fewer pixels than that (up to
    scale 1): a rig with a smaller sensor keeps its small objects (0: off, as before it existed).
    """

    name: str = "tiny"
    internal_scale: float = 0.5
    size_multiple: int = 32
    dims: tuple[int, ...] = (32, 48, 64, 96)
    reaw_dims: tuple[int, ...] = (16, 24, 32, 48)
    lrb_pool: tuple[int, ...] = (4, 6, 8, 8)
    lrb_query_stride: tuple[int, ...] = (2, 1, 1, 1)
    lrb_heads: int = 2
    fgb_dilations: tuple[int, ...] = (1, 2, 3)
    vss_depths: tuple[int, ...] = (0, 1, 1, 1)
    ssm_expand: float = 1.0
    ssm_headdim: int = 16
    ssm_state: int = 16
    mlp_ratio: float = 0.0
    reaw_radius: int = 3
    seg_refine: int = 0
    min_internal_pixels: int = 0

    def __post_init__(self) -> None:
        # YAML/JSON round trips turn tuples into lists; normalise so equality and hashing behave.
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                setattr(self, f.name, tuple(value))
        for key in ("dims", "reaw_dims", "lrb_pool", "lrb_query_stride", "vss_depths"):
            if len(getattr(self, key)) != 4:
                raise ValueError(f"ModelConfig.{key} needs 4 entries (strides 4, 8, 16, 32)")
        if self.seg_refine < 0:
            raise ValueError("ModelConfig.seg_refine must be >= 0 (0: no refinement)")
        if not 0.0 < self.internal_scale <= 1.0:
            raise ValueError("ModelConfig.internal_scale must be in (0, 1]")
        if self.min_internal_pixels < 0:
            raise ValueError("ModelConfig.min_internal_pixels must be >= 0 (0: off)")
        for d, depth in zip(self.dims, self.vss_depths, strict=True):
            if depth and int(d * self.ssm_expand) % self.ssm_headdim:
                raise ValueError(f"dim {d} * ssm_expand must be a multiple of ssm_headdim {self.ssm_headdim}")


PRESETS: dict[str, ModelConfig] = {
    # CPU real time: network at half resolution, scans only at strides 8/16/32, no MLPs in the VSS blocks.
    "tiny": ModelConfig(seg_refine=16),
    # GPU: full resolution, wider decoders, scans at every level, two at the coarse ones.
    "base": ModelConfig(
        name="base",
        internal_scale=1.0,
        dims=(48, 96, 128, 192),
        reaw_dims=(32, 48, 64, 96),
        lrb_pool=(6, 8, 12, 12),
        lrb_query_stride=(1, 1, 1, 1),
        lrb_heads=4,
        vss_depths=(1, 1, 2, 2),
        ssm_expand=2.0,
        ssm_headdim=32,
        ssm_state=16,
        mlp_ratio=2.0,
        seg_refine=32,
    ),
}
