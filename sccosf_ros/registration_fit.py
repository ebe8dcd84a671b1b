"""One homography fitted jointly to a batch of edge-image pairs (torch): the solver of
:mod:`sccosf_ros.registration`. No ROS.

The unknown is the warp ``G`` from RGB pixels to thermal pixels (both on the RGB grid), written as the
displacement of the frame's four corners: eight numbers in pixels, all of one scale, so a quasi-Newton
solver (``torch.optim.LBFGS``) needs no hand-tuned step sizes. Each pair's thermal edge image is resampled
through ``G`` (``F.grid_sample``) and compared with its RGB edge image by normalised cross-correlation over
the pixels where the thermal frame holds data; the objective is the mean of the pairs' correlations, so each
pair counts once whatever its contrast, and no pair's edges are blurred by summing with another's. The fit
runs coarse to fine on a pyramid (OpenCV area resampling, then a small Gaussian), from the caller's start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

Batch = tuple[Sequence[np.ndarray], Sequence[np.ndarray], Sequence[np.ndarray]]  # RGB, thermal, masks


def corners(hw: tuple[int, int]) -> np.ndarray:
    """The four outer pixel centres of an (H, W) frame, (4, 2) float64."""
    h, w = hw
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)


def homography_from_corners(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """The 3x3 map taking four points ``src`` onto ``dst`` ((4, 2) each), differentiable in ``dst``: the
    8x8 linear system of ``cv2.getPerspectiveTransform``, solved by torch so gradients flow through it."""
    x, y = src[:, 0], src[:, 1]
    u, v = dst[:, 0], dst[:, 1]
    one, zero = torch.ones_like(u), torch.zeros_like(u)
    rows_u = torch.stack([x * one, y * one, one, zero, zero, zero, -x * u, -y * u], 1)
    rows_v = torch.stack([zero, zero, zero, x * one, y * one, one, -x * v, -y * v], 1)
    p = torch.linalg.solve(torch.cat([rows_u, rows_v]), torch.cat([u, v]))
    return torch.cat([p, one[:1]]).reshape(3, 3)


def _shrink(image: np.ndarray, factor: int, blur: float) -> np.ndarray:
    h, w = image.shape
    small = (
        cv2.resize(image, (round(w / factor), round(h / factor)), interpolation=cv2.INTER_AREA)
        if factor > 1
        else image
    )
    return cv2.GaussianBlur(small, (0, 0), blur) if blur > 0 else small


def _ncc(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Normalised cross-correlation per batch item over the pixels where ``w`` is 1: (N, 1, H, W) -> (N,)."""
    dims = (1, 2, 3)
    n = w.sum(dim=dims, keepdim=True).clamp_min(1.0)
    da = (a - (w * a).sum(dim=dims, keepdim=True) / n) * w
    db = (b - (w * b).sum(dim=dims, keepdim=True) / n) * w
    return (da * db).sum(dim=dims) / ((da * da).sum(dim=dims) * (db * db).sum(dim=dims)).sqrt().clamp_min(
        1e-12
    )


class _Level:
    """One pyramid level of the batch: images as tensors and the level's pixel centres in full-scale
    coordinates (a level pixel u covers full-scale pixels around (u + 0.5) * factor - 0.5)."""

    def __init__(self, batch: Batch, factor: int, blur: float, hw: tuple[int, int]):
        rgb, thermal, masks = batch
        self.rgb = torch.from_numpy(np.stack([_shrink(a, factor, blur) for a in rgb]))[:, None]
        self.thermal = torch.from_numpy(np.stack([_shrink(a, factor, blur) for a in thermal]))[:, None]
        self.mask = torch.from_numpy(np.stack([_shrink(a, factor, 0.0) for a in masks]))[:, None]
        self.hw = tuple(self.rgb.shape[2:])
        hl, wl = self.hw
        vv, uu = torch.meshgrid(
            torch.arange(hl, dtype=torch.float64), torch.arange(wl, dtype=torch.float64), indexing="ij"
        )
        step = torch.tensor([hw[1] / wl, hw[0] / hl], dtype=torch.float64)
        full = (torch.stack([uu, vv], -1).reshape(-1, 2) + 0.5) * step - 0.5
        self.points = torch.cat([full, torch.ones(len(full), 1, dtype=torch.float64)], 1)
        self.scale = torch.tensor([wl / hw[1], hl / hw[0]], dtype=torch.float64)

    def similarity(self, g: torch.Tensor, shift: int = 0) -> torch.Tensor:
        """Per-pair NCC with the thermal images warped by ``g`` (RGB -> thermal, full-scale pixels); with
        ``shift`` the thermal image of pair k meets the RGB image of pair k - shift (a mismatched pairing)."""
        q = self.points @ g.T
        uv = (q[:, :2] / q[:, 2:3] + 0.5) * self.scale - 0.5  # level pixel coordinates
        hl, wl = self.hw
        grid = torch.stack([2 * uv[:, 0] / (wl - 1) - 1, 2 * uv[:, 1] / (hl - 1) - 1], -1).float()
        grid = grid.reshape(1, hl, wl, 2).expand(len(self.rgb), -1, -1, -1)
        thermal = F.grid_sample(self.thermal, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        with torch.no_grad():  # a weight, not a term to optimise: the fit must not chase the frame's border
            inside = F.grid_sample(self.mask, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            weight = (inside > 0.999).float()
        return _ncc(torch.roll(self.rgb, shift, 0) if shift else self.rgb, thermal, weight)


def _optimise(level: _Level, warp: Callable[[], torch.Tensor], d: torch.Tensor, iterations: int) -> float:
    """LBFGS on ``d`` (the corner displacements ``warp()`` reads) at one level; the pairs' mean NCC after."""
    opt = torch.optim.LBFGS(
        [d], max_iter=iterations, line_search_fn="strong_wolfe", tolerance_grad=1e-7, tolerance_change=1e-3
    )

    def loss() -> torch.Tensor:
        opt.zero_grad()
        value = -1e3 * level.similarity(warp()).mean()  # scaled: gradients well above LBFGS's tolerances
        value.backward()
        return value

    opt.step(loss)
    with torch.no_grad():
        return float(level.similarity(warp()).mean())


def fit(
    batch: Batch,
    start: np.ndarray,
    factors: Sequence[int],
    blur: float,
    iterations: int,
) -> tuple[np.ndarray, float]:
    """Fit ``G`` (RGB -> thermal pixels) from ``start``, coarse to fine over ``factors``; ``G`` and the
    pairs' mean NCC at the finest level. ``batch``: RGB edge images, thermal edge images on the RGB grid,
    masks (1 where the thermal frame holds data), float32, all of one (H, W)."""
    hw = batch[0][0].shape
    src = torch.from_numpy(corners(hw))
    dst0 = torch.from_numpy(cv2.perspectiveTransform(corners(hw)[None], start)[0])
    d = torch.zeros(4, 2, dtype=torch.float64, requires_grad=True)
    score = 0.0
    for factor in factors:
        score = _optimise(
            _Level(batch, factor, blur, hw), lambda: homography_from_corners(src, dst0 + d), d, iterations
        )
    g = homography_from_corners(src, dst0 + d.detach()).numpy()
    return g / g[2, 2], score


def mismatched_similarity(
    batch: Batch,
    g: np.ndarray,
    factor: int,
    blur: float,
) -> float:
    """The mean NCC under ``g`` when each RGB image meets the next pair's thermal image: what unrelated
    frames score, the yardstick for whether the pairs' own score means anything."""
    level = _Level(batch, factor, blur, batch[0][0].shape)
    with torch.no_grad():
        return float(level.similarity(torch.from_numpy(g), shift=1).mean())
