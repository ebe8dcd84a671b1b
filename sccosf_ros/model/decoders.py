"""The two interacting decoders: ICRM (segmentation) and ReAW (fusion).

Both walk the fused Sc-CFM features from stride 32 up to stride 4. At every level

    s_l = VSS^depth( refine( up(s_{l+1}) + f_l ) )      ICRM: context recovery by 2D selective scan
    r_l =            refine( up(r_{l+1}) + f_l )        ReAW: light reconstruction path
    s_l, r_l = s_l + W_rs r_l,  r_l + W_sr s_l          interaction (the "I" of ICRM)

Segmentation gets the fusion path's appearance cues, fusion gets the segmentation path's region/semantic
prior. ReAW's head (guided by s_4 as well) predicts, at low resolution, a region weight for the sources'
base layers, a gain for each source's detail layer and a bounded correction; they are upsampled and
applied to the *full-resolution* sources by :func:`reaw_reconstruct`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sccosf_ros.model.cfm import conv_bn_act
from sccosf_ros.model.config import ModelConfig
from sccosf_ros.model.ss2d import VSSBlock

__all__ = [
    "Exchange",
    "ICRMDecoder",
    "ICRMStage",
    "ReAWDecoder",
    "ReAWHead",
    "ReAWStage",
    "SegRefine",
    "box_filter",
    "reaw_reconstruct",
    "split_base_detail",
]


def _up(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class _Refine(nn.Sequential):
    """Depthwise 3×3 + pointwise: local smoothing of the upsampled sum at low cost."""

    def __init__(self, dim: int) -> None:
        super().__init__(conv_bn_act(dim, dim, 3, groups=dim, act=False), conv_bn_act(dim, dim))


class _UpMerge(nn.Module):
    """Project the coarser state to this level's width, upsample ×2 (project first: fewer channels to
    interpolate), add the lateral feature, refine."""

    def __init__(self, cin: int, dim: int) -> None:
        super().__init__()
        self.proj = conv_bn_act(cin, dim)
        self.refine = _Refine(dim)

    def forward(self, prev: Tensor, lateral: Tensor) -> Tensor:
        return self.refine(_up(self.proj(prev), lateral) + lateral)


class ICRMStage(nn.Module):
    """One ICRM level: merge the coarser state with the fused skip, then recover long-range context."""

    def __init__(self, cfg: ModelConfig, i: int) -> None:
        super().__init__()
        d = cfg.dims
        self.up = _UpMerge(d[i + 1], d[i]) if i < 3 else None
        self.vss = nn.Sequential(
            *(
                VSSBlock(d[i], cfg.ssm_expand, cfg.ssm_headdim, cfg.ssm_state, cfg.mlp_ratio)
                for _ in range(cfg.vss_depths[i])
            )
        )

    def forward(self, fused: Tensor, prev: Tensor | None = None) -> Tensor:
        x = fused if self.up is None or prev is None else self.up(prev, fused)
        return self.vss(x)


class Exchange(nn.Module):
    """Interaction between the decoders: each adds a 1×1 projection of the other's (pre-exchange) state."""

    def __init__(self, dim: int, rdim: int) -> None:
        super().__init__()
        self.from_reaw = nn.Conv2d(rdim, dim, 1)
        self.to_reaw = nn.Conv2d(dim, rdim, 1)

    def forward(self, s: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
        return s + self.from_reaw(r), r + self.to_reaw(s)


class SegRefine(nn.Module):
    """Segmentation refinement at the network's input resolution, guided by the sources themselves.

    The head's logits live at stride 4 of the network input (stride 8 of a ``tiny`` camera image), so a
    kerb, a wheel stop or a bike frame a few pixels wide falls between two logits. This module sees the
    (normalised) RGB and thermal images at the network's input resolution through two small convolutions,
    adds the upsampled decoder state and coarse logits, and predicts a *residual* on the upsampled logits.
    Its last layer starts at zero, so a trained coarse head keeps its predictions (up to resampling in two
    steps instead of one) until the refinement has learned something. It reads the segmentation state but
    feeds nothing back, so fine-tuning it alone leaves the fused image bit for bit as it was.
    """

    def __init__(self, sdim: int, num_classes: int, width: int) -> None:
        super().__init__()
        self.guide = nn.Sequential(
            conv_bn_act(4, width, 3),
            conv_bn_act(width, width, 3, groups=width, act=False),
            conv_bn_act(width, width),
        )
        self.context = conv_bn_act(sdim, width)
        cin = 2 * width + num_classes
        self.fuse = nn.Sequential(conv_bn_act(cin, cin, 3, groups=cin, act=False), conv_bn_act(cin, width))
        self.out = nn.Conv2d(width, num_classes, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.fuse_pad = 0
        """Zero channels appended to the fuse input (:meth:`pad_fuse_channels_`; 0 in training)."""

    def forward(self, coarse: Tensor, s: Tensor, guide: Tensor) -> Tensor:
        """``coarse`` (B,K,h,w) logits and ``s`` (B,C,h,w) state at stride 4; ``guide`` (B,4,H,W) images."""
        # Channels-last: the depthwise 3×3 convolutions at this resolution are memory-bound, and oneDNN's
        # NHWC kernels ran them 2-3× faster than NCHW on the 2-core CPU (same result to 1e-5).
        cl = torch.channels_last
        coarse, s, guide = (t.contiguous(memory_format=cl) for t in (coarse, s, guide))
        up = _up(coarse, guide)
        padded = F.pad(up, (0, 0, 0, 0, 0, self.fuse_pad)) if self.fuse_pad else up
        h = torch.cat([self.guide(guide), _up(self.context(s), guide), padded], dim=1)
        return (up + self.out(self.fuse(h))).contiguous()

    @torch.no_grad()
    def pad_fuse_channels_(self, multiple: int = 8) -> int:
        """Append zero channels to the fuse input so that its depthwise and pointwise convolutions have a
        multiple of ``multiple`` channels; returns how many were added. Same outputs (the new channels are
        zeros through zero weights), for inference after :func:`~sccosf_ros.model.fold_batchnorm_`.

        Why: ONNX Runtime's CPU convolutions use their blocked (NCHWc, 8 channels on AVX2, 16 on AVX-512)
        kernels only for channel counts that are a multiple of the block; at 2·16 + 9 = 41 channels the
        two convolutions took 23 of 40 ms of the refinement in the ONNX graph (docs/onnx.md).
        """
        dw_seq, pw_seq = self.fuse[0], self.fuse[1]
        dw, pw = dw_seq[0], pw_seq[0]
        if not (isinstance(dw_seq[1], nn.Identity) and isinstance(pw_seq[1], nn.Identity)):
            raise RuntimeError("pad_fuse_channels_ needs the BatchNorms folded (fold_batchnorm_) first")
        extra = (-dw.in_channels) % multiple
        if extra == 0:
            return 0
        cin = dw.in_channels + extra
        padded = nn.Conv2d(cin, cin, dw.kernel_size, padding=dw.padding, groups=cin, bias=dw.bias is not None)
        padded = padded.to(dw.weight)
        padded.weight.copy_(F.pad(dw.weight, (0, 0, 0, 0, 0, 0, 0, extra)))
        if dw.bias is not None:
            padded.bias.copy_(F.pad(dw.bias, (0, extra)))
        dw_seq[0] = padded
        pw.weight = nn.Parameter(F.pad(pw.weight, (0, 0, 0, 0, 0, extra)))
        pw.in_channels = cin
        self.fuse_pad += extra
        return extra


class ICRMDecoder(nn.Module):
    """Interactive Context Recovery Mamba decoder: stages, exchanges and the segmentation head.

    Index 0..3 = stride 4..32. Driven level by level by :class:`sccosf_ros.model.SCCoSF` together with
    :class:`ReAWDecoder`, because the two exchange features at every level: :meth:`level`, then
    :meth:`interact`, then (after the finest level) :meth:`logits`.
    """

    def __init__(self, cfg: ModelConfig, num_classes: int) -> None:
        super().__init__()
        d, rd = cfg.dims, cfg.reaw_dims
        self.stages = nn.ModuleList(ICRMStage(cfg, i) for i in range(4))
        self.exchange = nn.ModuleList(Exchange(d[i], rd[i]) for i in range(4))
        self.head = nn.Sequential(_Refine(d[0]), nn.Conv2d(d[0], num_classes, 1))
        self.refine = SegRefine(d[0], num_classes, cfg.seg_refine) if cfg.seg_refine else None

    @property
    def has_refine(self) -> bool:
        """Whether this decoder has the input-resolution refinement (checkpoints before it do not)."""
        return self.refine is not None

    def level(self, i: int, fused: Tensor, prev: Tensor | None) -> Tensor:
        """Segmentation state at level ``i`` from the fused skip and the coarser level's state."""
        return self.stages[i](fused, prev)

    def interact(self, i: int, s: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
        """The two decoders' states at level ``i`` after each has added the other's."""
        return self.exchange[i](s, r)

    def logits(self, s: Tensor, guide: Tensor | None = None) -> Tensor:
        """Class logits at stride 4 of the network input, or at its full resolution when refined.

        ``guide`` is the (B,4,H,W) normalised RGB + thermal the refinement reads; without it (or without a
        refinement) the coarse head's logits come back (cheaper).
        """
        seg = self.head(s)
        if guide is not None and self.refine is not None:
            seg = self.refine(seg, s, guide)
        return seg


class ReAWStage(nn.Module):
    """One ReAW level: lateral projection of the fused skip, merged with the coarser reconstruction state."""

    def __init__(self, cfg: ModelConfig, i: int) -> None:
        super().__init__()
        d, rd = cfg.dims, cfg.reaw_dims
        self.lateral = conv_bn_act(d[i], rd[i])
        self.up = _UpMerge(rd[i + 1], rd[i]) if i < 3 else None

    def forward(self, fused: Tensor, prev: Tensor | None = None) -> Tensor:
        x = self.lateral(fused)
        return x if self.up is None or prev is None else self.up(prev, x)


class ReAWHead(nn.Module):
    """Low-resolution ReAW maps, each (B,1,h,w): base-weight logit, two detail-gain logits, correction.

    Sees the segmentation state too, so region boundaries follow the semantic layout.
    """

    def __init__(self, rdim: int, sdim: int) -> None:
        super().__init__()
        cin = rdim + sdim
        self.body = nn.Sequential(
            conv_bn_act(cin, cin, 3, groups=cin, act=False), conv_bn_act(cin, rdim), nn.Conv2d(rdim, 4, 1)
        )

    def forward(self, r: Tensor, s: Tensor) -> Tensor:
        """Raw maps (weight logit, visible gain logit, thermal gain logit, correction logit)."""
        return self.body(torch.cat([r, s], dim=1))


class ReAWDecoder(nn.Module):
    """Region Adaptive Weighted reconstruction decoder: per-level stages and the weight/correction head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.stages = nn.ModuleList(ReAWStage(cfg, i) for i in range(4))
        self.head = ReAWHead(cfg.reaw_dims[0], cfg.dims[0])

    def level(self, i: int, fused: Tensor, prev: Tensor | None) -> Tensor:
        """Reconstruction state at level ``i`` from the fused skip and the coarser level's state."""
        return self.stages[i](fused, prev)

    def maps(self, r: Tensor, s: Tensor) -> Tensor:
        """Raw low-resolution maps for :func:`reaw_reconstruct`, guided by the segmentation state ``s``."""
        return self.head(r, s)


def box_filter(x: Tensor, radius: int) -> Tensor:
    """Mean over the (2r+1)² window inside the image (borders average fewer pixels), per channel.

    Equal to ``avg_pool2d(x, 2r+1, stride=1, padding=r, count_include_pad=False)`` up to float rounding,
    computed as two separable sums of shifted slices: at 480×640 that is ~1 ms where ``avg_pool2d`` took
    ~9 ms on two CPU threads (measured). Under ``torch.export`` (the ONNX export) it is two separable
    average pools instead, 1×k then k×1 (the same means, to 2e-7): ONNX Runtime runs those in a fifth of
    the time of the 2k slices and adds (5 ms against 22 ms for 2×480×640 on a loaded 2-core machine).
    """
    h, w = x.shape[-2:]
    k = 2 * radius + 1
    if torch.compiler.is_exporting():
        rows = F.avg_pool2d(x, (1, k), stride=1, padding=(0, radius), count_include_pad=False)
        return F.avg_pool2d(rows, (k, 1), stride=1, padding=(radius, 0), count_include_pad=False)
    p = F.pad(x, (radius, radius, 0, 0))
    rows = p[..., 0:w]
    for i in range(1, k):
        rows = rows + p[..., i : i + w]
    p = F.pad(rows, (0, 0, radius, radius))
    total = p[..., 0:h, :]
    for i in range(1, k):
        total = total + p[..., i : i + h, :]
    return total * _window_norm(h, w, radius, x)


def _window_norm(h: int, w: int, radius: int, like: Tensor) -> Tensor:
    """1 / (pixels of each window inside the image), (H, W)."""

    def count(n: int) -> Tensor:
        i = torch.arange(n, device=like.device)
        return (torch.clamp(i + radius, max=n - 1) - torch.clamp(i - radius, min=0) + 1).to(like.dtype)

    return 1.0 / (count(h)[:, None] * count(w)[None, :])


def split_base_detail(y: Tensor, radius: int) -> tuple[Tensor, Tensor]:
    """Two-scale split of a full-resolution image: box-filtered base and the residual detail layer."""
    base = box_filter(y, radius)
    return base, y - base


def reaw_reconstruct(maps: Tensor, y_vis: Tensor, thermal: Tensor, radius: int) -> tuple[Tensor, Tensor]:
    """Region-adaptive weighted reconstruction of the fused luminance at the sources' resolution.

    ``maps`` are the head's raw low-resolution maps, already upsampled to the sources' size. Base layers
    (large-scale intensity) are mixed *convexly* by the region weight ``w``; detail layers are added with
    their own gains in (0, 2), so a region can keep the sharper source's texture (or strengthen it)
    without adding an edge twice where both sources carry it. Returns (fused_y, w).
    """
    gates = torch.sigmoid(maps[:, 0:3])  # one kernel over three planes (slices one by one: ~9x slower)
    w = gates[:, 0:1]
    gain_vis = 2.0 * gates[:, 1:2]
    gain_ir = 2.0 * gates[:, 2:3]
    corr = 0.25 * torch.tanh(maps[:, 3:4])
    both = torch.cat([y_vis, thermal], dim=1)
    base, detail = split_base_detail(both, radius)
    fused = (
        w * base[:, 0:1]
        + (1.0 - w) * base[:, 1:2]
        + gain_vis * detail[:, 0:1]
        + gain_ir * detail[:, 1:2]
        + corr
    )
    return fused.clamp(0.0, 1.0), w
