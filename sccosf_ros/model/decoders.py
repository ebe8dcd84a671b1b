"""The two interacting decoders: ICRM (segmentation) and ReAW (fusion).

Both walk the fused Sc-CFM features from stride 32 up to stride 4. At every level

    s_l = VSS^depth( refine( up(s_{l+1}) + f_l ) )      ICRM: context recovery by 2D selective scan
    r_l =            refine( up(r_{l+1}) + f_l )        ReAW: light reconstruction path
    s_l, r_l = s_l + W_rs r_l,  r_l + W_sr s_l          interaction (the "I" of ICRM)

Segmentation gets the fusion path's appearance cues, fusion gets the segmentation path's region/semantic
prior. ReAW's head (guided by s_4 as well) predicts a region weight map and a low-resolution correction,
which are upsampled and applied to the *full-resolution* sources by :class:`sccosf_ros.model.SCCoSF`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sccosf_ros.model.cfm import conv_bn_act
from sccosf_ros.model.config import ModelConfig
from sccosf_ros.model.ss2d import VSSBlock

__all__ = ["ICRMDecoder", "ReAWDecoder"]


def _up(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class _Refine(nn.Sequential):
    """Depthwise 3×3 + pointwise: local smoothing of the upsampled sum at low cost."""

    def __init__(self, dim: int) -> None:
        super().__init__(conv_bn_act(dim, dim, 3, groups=dim, act=False), conv_bn_act(dim, dim))


class ICRMDecoder(nn.Module):
    """Interactive Context Recovery Mamba decoder. Level index 0..3 = stride 4..32."""

    def __init__(self, cfg: ModelConfig, num_classes: int) -> None:
        super().__init__()
        d, rd = cfg.dims, cfg.reaw_dims
        self.up_proj = nn.ModuleList(conv_bn_act(d[i + 1], d[i]) for i in range(3))
        self.refine = nn.ModuleList(_Refine(d[i]) for i in range(3))
        self.vss = nn.ModuleList(
            nn.Sequential(*(VSSBlock(d[i], cfg.ssm_expand, cfg.ssm_headdim, cfg.ssm_state, cfg.mlp_ratio)
                            for _ in range(cfg.vss_depths[i])))
            for i in range(4)
        )
        self.from_reaw = nn.ModuleList(nn.Conv2d(rd[i], d[i], 1) for i in range(4))
        self.to_reaw = nn.ModuleList(nn.Conv2d(d[i], rd[i], 1) for i in range(4))
        self.head = nn.Sequential(conv_bn_act(d[0], d[0], 3), nn.Conv2d(d[0], num_classes, 1))

    def stage(self, i: int, prev: Tensor | None, fused: Tensor) -> Tensor:
        """Upsample the coarser state into level ``i``, add the skip, recover long-range context."""
        x = fused if prev is None else self.refine[i](_up(self.up_proj[i](prev), fused) + fused)
        return self.vss[i](x)

    def exchange(self, i: int, s: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
        """Swap features with the fusion decoder (both directions use the pre-exchange values)."""
        return s + self.from_reaw[i](r), r + self.to_reaw[i](s)


class ReAWDecoder(nn.Module):
    """Region Adaptive Weighted reconstruction decoder (feature path + weight/correction head)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, rd = cfg.dims, cfg.reaw_dims
        self.lateral = nn.ModuleList(conv_bn_act(d[i], rd[i]) for i in range(4))
        self.up_proj = nn.ModuleList(conv_bn_act(rd[i + 1], rd[i]) for i in range(3))
        self.refine = nn.ModuleList(_Refine(rd[i]) for i in range(3))
        self.head = nn.Sequential(conv_bn_act(rd[0] + d[0], rd[0], 3), nn.Conv2d(rd[0], 2, 1))

    def stage(self, i: int, prev: Tensor | None, fused: Tensor) -> Tensor:
        x = self.lateral[i](fused)
        return x if prev is None else self.refine[i](_up(self.up_proj[i](prev), x) + x)

    def predict(self, r: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """Low-resolution region-weight logits and bounded luminance correction, each (B,1,h,w)."""
        logit, corr = self.head(torch.cat([r, s], dim=1)).chunk(2, dim=1)
        return logit, 0.5 * torch.tanh(corr)
