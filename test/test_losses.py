"""Losses: finite, zero for a perfect prediction where that is defined, ignore/OHEM/foreground behaviour."""

import pytest
import torch

from sccosf_ros.model.color import luma
from sccosf_train.losses import (
    LossWeights,
    enet_class_weights,
    foreground_mask,
    fusion_loss,
    joint_loss,
    segmentation_loss,
    sobel_magnitude,
    ssim,
)


def _labels(b=2, h=16, w=20, k=9):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, k, (b, h, w), generator=g)


def test_cross_entropy_zero_for_perfect_logits_and_ignores_255():
    labels = _labels()
    perfect = torch.nn.functional.one_hot(labels, 9).permute(0, 3, 1, 2).float() * 30
    assert float(segmentation_loss(perfect, labels)) < 1e-6
    wrong = torch.zeros_like(perfect)
    assert abs(float(segmentation_loss(wrong, labels)) - torch.log(torch.tensor(9.0)).item()) < 1e-5
    # Ignored pixels do not count, however wrong the prediction there is.
    lab2 = labels.clone()
    lab2[:, :8] = 255
    bad = perfect.clone()
    bad[:, :, :8] = -perfect[:, :, :8]
    assert float(segmentation_loss(bad, lab2)) < 1e-6


def test_cross_entropy_all_ignored_is_zero_with_graph():
    logits = torch.randn(1, 9, 8, 8, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((1, 8, 8), 255))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_ohem_focuses_on_hard_pixels():
    labels = _labels()
    logits = torch.randn(2, 9, 16, 20, generator=torch.Generator().manual_seed(1))
    plain = segmentation_loss(logits, labels)
    hard = segmentation_loss(logits, labels, ohem_thresh=0.7, ohem_min_kept=50)
    assert torch.isfinite(hard) and float(hard) >= float(plain)


def test_class_weights_match_torch_weighted_mean_and_keep_ohem_hardness_unweighted():
    labels = _labels()
    logits = torch.randn(2, 9, 16, 20, generator=torch.Generator().manual_seed(2))
    cw = torch.linspace(1.0, 5.0, 9)
    ours = segmentation_loss(logits, labels, class_weights=cw)
    ref = torch.nn.functional.cross_entropy(logits, labels, weight=cw)  # normalised by summed weights
    assert torch.allclose(ours, ref, atol=1e-6)
    labels[0, :4] = 255  # ignored pixels carry no weight either
    ref = torch.nn.functional.cross_entropy(logits, labels, weight=cw, ignore_index=255)
    assert torch.allclose(segmentation_loss(logits, labels, class_weights=cw), ref, atol=1e-6)
    # Uniform weights change nothing, with or without OHEM: hardness is judged before weighting.
    ones = torch.ones(9)
    for kw in ({}, {"ohem_thresh": 0.7, "ohem_min_kept": 50}):
        assert torch.allclose(
            segmentation_loss(logits, labels, class_weights=ones, **kw),
            segmentation_loss(logits, labels, **kw),
            atol=1e-6,
        )


def test_enet_weights_favour_rare_classes_and_are_bounded():
    w = enet_class_weights([900, 90, 9, 1, 0])
    assert w[0] < w[1] < w[2] < w[3] < w[4]
    assert w[4] == pytest.approx(1 / torch.log(torch.tensor(1.02)).item(), rel=1e-6)  # absent: the bound
    for bad in ([], [0, 0], [1, -1]):
        with pytest.raises(ValueError):
            enet_class_weights(bad)


def test_fusion_terms_vanish_when_fused_equals_identical_sources():
    x = torch.rand(2, 1, 24, 32, generator=torch.Generator().manual_seed(2))
    fg = torch.zeros_like(x)
    out = fusion_loss(x, x, x, fg, LossWeights())
    for k, v in out.items():
        assert abs(float(v)) < 1e-5, k
    assert abs(float(ssim(x, x)) - 1.0) < 1e-6


def test_intensity_target_is_max_and_foreground_only_weighs_more_unless_thermal_target():
    g = torch.Generator().manual_seed(3)
    vis, ir = torch.rand(1, 1, 16, 16, generator=g), torch.rand(1, 1, 16, 16, generator=g)
    w = LossWeights()
    bg, fg = torch.zeros_like(vis), torch.zeros_like(vis)
    fg[..., :8, :] = 1.0
    best = torch.maximum(vis, ir)
    for mask in (bg, fg):
        assert float(fusion_loss(best, vis, ir, mask, w)["int"]) < 1e-7
    assert float(fusion_loss(vis, vis, ir, bg, w)["int"]) > 0.01
    # An error on foreground pixels costs more than the same error on background pixels.
    off_fg, off_bg = best.clone(), best.clone()
    off_fg[..., :8, :] += 0.1
    off_bg[..., 8:, :] += 0.1
    cost_fg, cost_bg = (float(fusion_loss(x, vis, ir, fg, w)["int"]) for x in (off_fg, off_bg))
    assert cost_fg > cost_bg
    thermal = LossWeights(fg_target="thermal")  # the first shipped model's recipe
    assert float(fusion_loss(ir, vis, ir, torch.ones_like(vis), thermal)["int"]) < 1e-7
    assert float(fusion_loss(best, vis, ir, bg, thermal)["int"]) < 1e-7


def test_foreground_mask_uses_labels_or_detached_predictions():
    labels = torch.tensor([[[2, 0], [1, 4]]])
    has = torch.tensor([True])
    fg = foreground_mask(labels, has, None, (1, 2, 3))
    assert fg.tolist() == [[[[1.0, 0.0], [1.0, 0.0]]]]
    logits = torch.full((1, 9, 2, 2), -20.0, requires_grad=True)
    with torch.no_grad():
        logits[:, 2] = 20.0  # the model thinks everything is a person
    fg_pred = foreground_mask(torch.full((1, 2, 2), 255), torch.tensor([False]), logits, (1, 2, 3))
    assert torch.allclose(fg_pred, torch.ones_like(fg_pred)) and not fg_pred.requires_grad


def test_sobel_is_zero_on_flat_and_positive_on_edges():
    flat = torch.full((1, 1, 8, 8), 0.5)
    assert float(sobel_magnitude(flat).abs().max()) == 0.0
    step = torch.zeros(1, 1, 8, 8)
    step[..., 4:] = 1
    assert float(sobel_magnitude(step).max()) > 0


def test_joint_loss_on_model_like_outputs_is_finite_and_differentiable():
    g = torch.Generator().manual_seed(4)
    rgb, th = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 1, 16, 16, generator=g)
    fused_y = torch.rand(2, 1, 16, 16, generator=g).requires_grad_()
    logits = torch.randn(2, 9, 16, 16, generator=g).requires_grad_()
    labels = _labels(2, 16, 16)
    labels[1] = 255
    out = {"fused_y": fused_y, "seg_logits": logits}
    losses = joint_loss(out, rgb, th, labels, torch.tensor([True, False]), LossWeights())
    assert set(losses) == {"total", "seg", "fusion", "int", "grad", "ssim"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    assert torch.isfinite(fused_y.grad).all() and torch.isfinite(logits.grad).all()
    assert luma(rgb).shape == (2, 1, 16, 16)


def test_floor_gradient_term_costs_only_a_shortfall_of_texture():
    g = torch.Generator().manual_seed(4)
    vis = torch.rand(1, 1, 24, 32, generator=g)
    ir = torch.zeros_like(vis)  # flat: the target is the visible image's gradient
    fg = torch.zeros_like(vis)
    floor = LossWeights(grad_mode="floor")
    sharper = (vis - 0.5) * 1.5 + 0.5  # more texture than either source
    assert float(fusion_loss(sharper, vis, ir, fg, floor)["grad"]) == 0.0
    assert float(fusion_loss(sharper, vis, ir, fg, LossWeights())["grad"]) > 0.0
    flat = torch.full_like(vis, 0.5)  # all texture lost: both modes charge the whole target
    expected = float(sobel_magnitude(vis).mean())
    for w in (floor, LossWeights()):
        assert float(fusion_loss(flat, vis, ir, fg, w)["grad"]) == pytest.approx(expected, rel=1e-6)
