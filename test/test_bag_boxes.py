"""sccosf-eval --boxes: frames tied to box files (every mapping source) and the report's box score."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from sccosf_ros import bags
from sccosf_ros.bag_boxes import FrameNameError, load_frame_names, rgb_stamps
from sccosf_ros.cli import evaluate as eval_cli
from sccosf_ros.engine import FusionResult
from sccosf_ros.evaluation import EvalConfig, evaluate_bag
from sccosf_ros.metrics.boxes import BoxDir

H, W = 64, 80


class _CarEngine:
    """Predicts car exactly on the box of pair "a" in every frame (so the box score is known exactly)."""

    def __init__(self) -> None:
        self.class_names = [str(i) for i in range(9)]
        self.palette = np.zeros((9, 3), np.uint8)

    def infer(self, rgb: np.ndarray, thermal: np.ndarray) -> FusionResult:
        mask = np.zeros(rgb.shape[:2], np.uint8)
        mask[16:48, 20:60] = 1
        return FusionResult(fused=np.ascontiguousarray(rgb), mask=mask, timings={"infer": 1.0})


@pytest.fixture(scope="module")
def folder_bag(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Pairs a, b, c as from-folder writes them; boxes: a has a car, b none (empty file), c no file."""
    root = tmp_path_factory.mktemp("boxes_eval")
    rng = np.random.default_rng(1)
    for sub in ("vi", "ir", "boxes/fusion", "boxes/visible"):
        (root / sub).mkdir(parents=True)
    for name in ("a", "b", "c"):
        cv2.imwrite(str(root / "vi" / f"{name}.png"), rng.integers(0, 255, (H, W, 3), np.uint8))
        cv2.imwrite(str(root / "ir" / f"{name}.png"), rng.integers(0, 255, (H, W), np.uint8))
    (root / "boxes" / "fusion" / "a.txt").write_text("2 0.5 0.5 0.5 0.5\n")  # x 20..60, y 16..48
    (root / "boxes" / "visible" / "b.txt").write_text("")
    bag = root / "pairs.bag"
    bags.write_folder_bag(bag, root / "vi", root / "ir", rate_hz=10.0)
    return bag, root / "boxes", root / "vi"


def _evaluate(bag: Path, boxes: Path, names: object, out: Path) -> dict:
    cfg = EvalConfig(boxes=boxes, box_names=names, label_topic=None, progress=False, write_bag=False)
    return evaluate_bag(bag, out, cfg, engine=_CarEngine())


def test_ordered_names_from_the_image_folder(folder_bag: tuple[Path, Path, Path], tmp_path: Path) -> None:
    bag, boxes, vi = folder_bag
    report = _evaluate(bag, boxes, vi, tmp_path / "e")
    box = report["box_score"]
    assert box["frames"] == 2 and box["frames_without_box_file"] == 1 and box["frames_without_name"] == 0
    car = box["per_class"]["car"]
    assert car["pred_pixels"] == 2 * 40 * 32 and car["pred_in_box"] == 40 * 32  # b's car pixels: no box
    assert car["precision"] == 0.5 and car["hit_rate"] == 1.0 and car["F"] == pytest.approx(2 / 3)
    assert box["mean_F"] == pytest.approx(2 / 3)  # person and bike have no object
    assert [f["box_name"] for f in report["fusion"]["per_frame"]] == ["a", "b", "c"]
    saved = json.loads((tmp_path / "e" / "report.json").read_text())
    assert saved["box_score"]["per_class"]["person"]["F"] is None  # NaN -> null
    md = (tmp_path / "e" / "report.md").read_text()
    assert "## Box score" in md and "| car | 0.500 | 1.000 | 0.667 |" in md


def test_json_map_sorted_and_bag_record(folder_bag: tuple[Path, Path, Path], tmp_path: Path) -> None:
    bag, boxes, _ = folder_bag
    stamps = rgb_stamps(bag, "/camera/rgb/image_raw")
    assert len(stamps) == 3
    mapping = tmp_path / "names.json"
    mapping.write_text(json.dumps({str(stamps[0]): "a.png"}))  # only the first frame is named
    box = _evaluate(bag, boxes, mapping, tmp_path / "j")["box_score"]
    assert (
        box["frames"] == 1 and box["frames_without_name"] == 2 and box["per_class"]["car"]["precision"] == 1
    )
    # "sorted": the box folder's names (a, b) against 3 frames: refused, not guessed
    with pytest.raises(FrameNameError, match="2 names but the bag has 3"):
        load_frame_names("sorted", bag, "/camera/rgb/image_raw", BoxDir(boxes))
    # nothing given: from-folder recorded the names in the bag's metadata, and they are used
    names, source = load_frame_names(None, bag, "/camera/rgb/image_raw", BoxDir(boxes))
    assert names == dict(zip(stamps, "abc", strict=True)) and "metadata" in source
    # a bag without that record (written by another tool): a clear error naming the option
    bare = tmp_path / "bare"
    shutil.copytree(bag, bare)
    meta_path = bare / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    meta["rosbag2_bagfile_information"].pop("custom_data", None)
    meta_path.write_text(yaml.safe_dump(meta))
    with pytest.raises(FrameNameError, match="--box-names"):
        load_frame_names(None, bare, "/camera/rgb/image_raw", BoxDir(boxes))


def test_cli_box_options(folder_bag: tuple[Path, Path, Path], tmp_path: Path, capsys) -> None:
    bag, boxes, _ = folder_bag
    names_file = tmp_path / "names.txt"
    names_file.write_text("a\nb\n")  # one short
    rc = eval_cli.main([str(bag), "--out", str(tmp_path / "o"), "--boxes", str(boxes), "--box-names",
                        str(names_file), "--no-progress"])  # fmt: skip
    assert rc == 2 and "2 names but the bag has 3" in capsys.readouterr().err
    rc = eval_cli.main([str(bag), "--out", str(tmp_path / "o"), "--boxes", str(tmp_path / "none")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
