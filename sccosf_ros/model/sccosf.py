"""SC-CoSF: joint thermal/visible fusion and semantic segmentation network."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sccosf_ros.model.cfm import ScCFM
from sccosf_ros.model.color import rgb_to_ycbcr_planes, ycbcr_planes_to_rgb
from sccosf_ros.model.config import PRESETS, ModelConfig
from sccosf_ros.model.decoders import ICRMDecoder, ReAWDecoder, reaw_reconstruct
from sccosf_ros.model.encoder import STAGE_CHANNELS, MobileNetV2Trunk, load_imagenet_encoder

__all__ = ["SCCoSF", "build_model", "build_model_from_config", "fold_batchnorm_"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class SCCoSF(nn.Module):
    """Shared MobileNetV2 encoder → Sc-CFM per stage → interacting ICRM (segmentation) and ReAW (fusion).

    ``forward(rgb, thermal)`` takes (B,3,H,W) RGB and (B,1,H,W) thermal in [0, 1] at any H, W and returns
    ``fused`` (B,3,H,W), ``fused_y`` (B,1,H,W), ``seg_logits`` (B,K,H,W) and ``weights`` (B,1,H,W), all at
    the input resolution. The network runs at ``internal_size(H, W)``; ReAW's weights are upsampled and
    applied to the full-resolution sources, so no source detail is lost to the internal resolution.
    """

    def __init__(self, config: ModelConfig, num_classes: int = 9) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError("num_classes must be positive")
        self.config = config
        self.num_classes = num_classes
        self.encoder = MobileNetV2Trunk()
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.cfm = nn.ModuleList(
            ScCFM(c, d, config.lrb_heads, pool, config.fgb_dilations, qs)
            for c, d, pool, qs in zip(
                STAGE_CHANNELS, config.dims, config.lrb_pool, config.lrb_query_stride, strict=True
            )
        )
        self.icrm = ICRMDecoder(config, num_classes)
        self.reaw = ReAWDecoder(config)

    def internal_size(self, height: int, width: int) -> tuple[int, int]:
        """Network resolution: input × ``internal_scale`` rounded to a multiple of ``size_multiple``; for a
        frame so small that this leaves fewer than ``min_internal_pixels`` pixels, the scale that gives it
        that many (at most 1)."""
        m, s = self.config.size_multiple, self.config.internal_scale
        floor = self.config.min_internal_pixels
        if floor and height * width * s * s < floor:
            s = min(1.0, math.sqrt(floor / (height * width)))
        return max(m, round(height * s / m) * m), max(m, round(width * s / m) * m)

    def forward(self, rgb: Tensor, thermal: Tensor, refine: bool = True) -> dict[str, Tensor]:
        """See the class docstring; ``refine=False`` skips the segmentation refinement (the coarse mask,
        cheaper; the fused image is the same either way)."""
        if rgb.dim() != 4 or rgb.shape[1] != 3:
            raise ValueError(f"rgb must be (B,3,H,W), got {tuple(rgb.shape)}")
        if thermal.dim() != 4 or thermal.shape[1] != 1:
            raise ValueError(f"thermal must be (B,1,H,W), got {tuple(thermal.shape)}")
        if rgb.shape[0] != thermal.shape[0] or rgb.shape[-2:] != thermal.shape[-2:]:
            raise ValueError(f"rgb {tuple(rgb.shape)} and thermal {tuple(thermal.shape)} do not match")
        height, width = rgb.shape[-2:]
        size = self.internal_size(height, width)

        # Thermal replicated to 3 channels: a grey image is in-distribution for the ImageNet trunk, and
        # one shared trunk on a (2B) batch is one set of kernels instead of two passes. Resized before it is
        # replicated: the same values, one plane resized instead of three.
        if size != (height, width):
            rgb_s = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False, antialias=True)
            th_s = F.interpolate(thermal, size=size, mode="bilinear", align_corners=False, antialias=True)
        else:
            rgb_s, th_s = rgb, thermal
        x = torch.cat([rgb_s, th_s.expand(-1, 3, -1, -1)], dim=0)
        x = (x - self.mean) / self.std
        feats = self.encoder(x)
        fused = [cfm(f) for cfm, f in zip(self.cfm, feats, strict=True)]

        s: Tensor | None = None
        r: Tensor | None = None
        for i in (3, 2, 1, 0):
            s, r = self.icrm.interact(i, self.icrm.level(i, fused[i], s), self.reaw.level(i, fused[i], r))
        assert s is not None and r is not None

        guide = None
        if refine and self.icrm.has_refine:  # the refinement reads both sources, normalised, at this size
            n = rgb.shape[0]
            guide = torch.cat([x[:n], x[n:, :1]], dim=1)
        seg = F.interpolate(
            self.icrm.logits(s, guide), size=(height, width), mode="bilinear", align_corners=False
        )
        maps = F.interpolate(self.reaw.maps(r, s), size=(height, width), mode="bilinear", align_corners=False)
        y_vis, cb, cr = rgb_to_ycbcr_planes(rgb)
        # Region-weighted choice of base intensity plus gated detail layers (not a sum of features): little
        # redundancy, and the full-resolution detail of the sources passes through at full resolution.
        fused_y, weights = reaw_reconstruct(maps, y_vis, thermal, self.config.reaw_radius)
        return {
            "fused": ycbcr_planes_to_rgb(fused_y, cb, cr),
            "fused_y": fused_y,
            "seg_logits": seg,
            "weights": weights,
        }


def fold_batchnorm_(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d in a Sequential into that conv (in place).

    For inference only (the node calls it after loading a checkpoint): ~100 BatchNorm kernels fewer per
    forward with identical eval-mode outputs. Parameter names change, so load weights *before* folding.
    """
    if model.training:
        raise RuntimeError("fold_batchnorm_ needs a model in eval mode (it bakes in running statistics)")
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            assert bn.running_var is not None and bn.running_mean is not None
            scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
            with torch.no_grad():
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias.detach())
            seq[i + 1] = nn.Identity()
    return model


def build_model_from_config(cfg: ModelConfig, num_classes: int = 9) -> SCCoSF:
    """Build an untrained SC-CoSF from an explicit configuration (e.g. one stored in a checkpoint)."""
    return SCCoSF(cfg, num_classes)


def build_model(
    preset: str = "tiny", num_classes: int = 9, pretrained_encoder: str | Path | None = None
) -> SCCoSF:
    """Build a preset (``tiny``: CPU real time, ``base``: GPU); optionally load ImageNet encoder weights."""
    if preset not in PRESETS:
        raise KeyError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    cfg = ModelConfig(**{k: getattr(PRESETS[preset], k) for k in PRESETS[preset].__dataclass_fields__})
    model = build_model_from_config(cfg, num_classes)
    if pretrained_encoder is not None:
        load_imagenet_encoder(model, pretrained_encoder)
    return model
