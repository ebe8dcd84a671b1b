"""The MFNet teacher rebuilt in sccosf_train.teachers.mfnet: layout, strict loading, reference agreement."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sccosf_train import teachers
from sccosf_train.teachers import mfnet

SHARED = Path(__file__).resolve().parents[2] / "shared"
TEACHER = SHARED / "teachers" / "mfnet"
MSRS = SHARED / "data" / "msrs"


def test_layout_matches_the_published_key_list_shapes() -> None:
    """Every parameter/buffer name and shape of the rebuild, as the README's description fixes them."""
    sd = mfnet.MFNet().state_dict()
    keys = [k for k in sd if not k.endswith("num_batches_tracked")]
    assert len(keys) == 228  # keys.txt lists 228 entries
    assert sd["conv4_rgb.conv1_left.conv.weight"].shape == (48, 48, 3, 3)
    assert sd["conv5_inf.conv3_right.conv.weight"].shape == (18, 36, 3, 3)
    assert sd["decode4.conv.weight"].shape == (64, 132, 3, 3)
    assert sd["decode1.bn.running_var"].shape == (9,)


@pytest.mark.skipif(not (TEACHER / "keys.txt").is_file(), reason="../shared/teachers/mfnet not present")
def test_layout_equals_keys_txt() -> None:
    listed = {}
    for line in (TEACHER / "keys.txt").read_text().splitlines():
        name, rest = line.split(" ", 1)
        listed[name] = tuple(int(v) for v in rest.split(")")[0].strip("(").split(",") if v.strip())
    ours = {k: tuple(v.shape) for k, v in mfnet.MFNet().state_dict().items() if "num_batches" not in k}
    assert ours == listed


def test_forward_shapes_and_input_checks() -> None:
    model = mfnet.MFNet().eval()
    with torch.no_grad():
        assert model(torch.rand(2, 4, 32, 48)).shape == (2, 9, 32, 48)
    with pytest.raises(ValueError, match="divisible by 16"):
        model(torch.rand(1, 4, 30, 48))
    with pytest.raises(ValueError, match="R, G, B, T"):
        model(torch.rand(1, 3, 32, 32))
    x = mfnet.to_input(np.full((20, 24, 3), 255, np.uint8), np.zeros((20, 24), np.uint8))
    assert x.shape == (1, 4, 20, 24) and float(x[0, 0].max()) == 1.0 and float(x[0, 3].max()) == 0.0
    # sizes that are not multiples of 16 are padded inside the helpers and cropped back
    teacher = mfnet.MFNetTeacher(model)
    rgb, ir = np.full((20, 24, 3), 255, np.uint8), np.zeros((20, 24), np.uint8)
    probs = teachers.predict_probs(teacher, rgb, ir, flip=True, scales=(1.0, 0.75))
    assert probs.shape == (9, 20, 24) and set(teachers.view_probs(teacher, rgb, ir, True, (1.0, 0.75))) == {
        (1.0, False),
        (1.0, True),
        (0.75, False),
        (0.75, True),
    }
    np.testing.assert_allclose(probs.sum(0), np.ones((20, 24)), rtol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        mfnet.to_input(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8))


def test_missing_or_foreign_weights_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(mfnet.TeacherError, match="not found"):
        mfnet.load_mfnet(tmp_path / "none.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"conv1_rgb.conv.weight": torch.zeros(16, 3, 3, 3)}, bad)
    with pytest.raises(mfnet.TeacherError, match="missing keys"):
        mfnet.load_mfnet(bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(mfnet.TeacherError, match="not a loadable"):
        mfnet.load_mfnet(junk)


def test_rebuild_loads_its_own_state_strictly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = mfnet.MFNet()
    path = tmp_path / "w.pth"
    torch.save({k: v for k, v in src.state_dict().items() if "num_batches" not in k}, path)
    model = mfnet.load_mfnet(path)
    x = torch.rand(1, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), src.eval()(x))


@pytest.mark.slow
@pytest.mark.skipif(
    not (TEACHER / "mfnet_final.pth").is_file() or not (MSRS / "vi").is_dir(),
    reason="../shared/teachers/mfnet or ../shared/data/msrs not present",
)
def test_agrees_with_the_reference_masks() -> None:
    """README: the original implementation's argmax masks for six MSRS pairs (named like the pairs)."""
    torch.set_num_threads(1)
    model = mfnet.load_mfnet()  # the default path: ../shared next to the checkout
    refs = sorted((TEACHER / "reference").glob("*.png"))
    assert len(refs) == 6
    for ref_path in refs:
        ref = cv2.imread(str(ref_path), cv2.IMREAD_UNCHANGED)
        rgb = cv2.cvtColor(cv2.imread(str(MSRS / "vi" / ref_path.name)), cv2.COLOR_BGR2RGB)
        ir = cv2.imread(str(MSRS / "ir" / ref_path.name), cv2.IMREAD_GRAYSCALE)
        pred = teachers.predict_mask(mfnet.MFNetTeacher(model), rgb, ir)
        agreement = float((pred == ref).mean())
        assert agreement > 0.999, f"{ref_path.name}: {agreement:.5f} of pixels agree"


def test_the_runtime_package_never_imports_the_teacher() -> None:
    """The product ships no MFNet: no module of sccosf_ros mentions the teachers package."""
    runtime = Path(__file__).resolve().parents[1] / "sccosf_ros"
    offenders = [p.name for p in runtime.rglob("*.py") if "teachers" in p.read_text()]
    assert offenders == []
