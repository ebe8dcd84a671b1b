"""The box score (sccosf_ros.metrics.boxes) on hand-made masks and boxes with exact expected numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sccosf_ros.metrics import BoxDir, BoxFileError, BoxScore
from sccosf_ros.metrics.boxes import Box, box_iou, f_score, merge_boxes, parse_yolo, yolo_box

BOXES = Path(__file__).resolve().parents[2] / "shared" / "data" / "msrs" / "boxes"


def test_yolo_box_covers_pixels_whose_centre_is_inside() -> None:
    # edges x 3..7, y 4..6 on a 10x10 image: pixel columns 3-6, rows 4-5
    assert yolo_box(1, 0.5, 0.5, 0.4, 0.2, 10, 10) == Box(1, 3, 4, 7, 6)
    # edges 3.4 .. 6.6: centres 3.5 .. 6.5 are inside, 6.5 < 6.6 so column 6 too
    b = yolo_box(1, 0.5, 0.5, 0.32, 0.2, 10, 10)
    assert (b.x0, b.x1) == (3, 7)
    # edges 3.6 .. 6.4: centres 4.5, 5.5 only
    b = yolo_box(1, 0.5, 0.5, 0.28, 0.2, 10, 10)
    assert (b.x0, b.x1) == (4, 6)
    # thinner than a pixel: the pixel under the centre
    b = yolo_box(1, 0.55, 0.55, 0.01, 0.01, 10, 10)
    assert (b.x0, b.y0, b.x1, b.y1) == (5, 5, 6, 6)
    # clipped to the image
    b = yolo_box(1, 0.0, 1.0, 0.4, 0.4, 10, 10)
    assert (b.x0, b.y0, b.x1, b.y1) == (0, 8, 2, 10)


def test_parse_yolo_maps_classes_and_rejects_bad_lines() -> None:
    boxes = parse_yolo("0 0.5 0.5 0.2 0.2\n\n1 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2  \n", 10, 10)
    assert [b.cls for b in boxes] == [2, 3, 1]  # person, bicycle, car -> MSRS 2, 3, 1
    with pytest.raises(BoxFileError, match=r"f\.txt:1"):
        parse_yolo("0 0.5 0.5 0.2\n", 10, 10, source="f.txt")
    with pytest.raises(BoxFileError, match="class 5"):
        parse_yolo("5 0.5 0.5 0.2 0.2\n", 10, 10)
    with pytest.raises(BoxFileError, match="not numbers"):
        parse_yolo("0 a 0.5 0.2 0.2\n", 10, 10)


def test_merge_is_transitive_per_class_and_needs_iou_above_half() -> None:
    a, b, c = Box(1, 0, 0, 10, 10), Box(1, 2, 0, 12, 10), Box(1, 4, 0, 14, 10)
    assert box_iou(a, b) == pytest.approx(80 / 120) and box_iou(a, c) == pytest.approx(60 / 140)
    assert [len(g) for g in merge_boxes([a, c, b])] == [3]  # a~b~c although a and c overlap < 0.5
    assert [len(g) for g in merge_boxes([a, Box(2, 2, 0, 12, 10)])] == [1, 1]  # other class
    exact = Box(1, 0, 0, 10, 20)  # IoU with a: 100 / 200, not above 0.5
    assert box_iou(a, exact) == 0.5
    assert len(merge_boxes([a, exact])) == 2


def _frame() -> tuple[np.ndarray, list[Box]]:
    """10x10: a car box (16 px) a quarter covered, 4 car pixels outside it, a missed person box, 2 stray
    bike pixels (no bike box) and 5 guardrail pixels."""
    mask = np.zeros((10, 10), np.uint8)
    mask[0:2, 0:2] = 1  # 4 car pixels inside the car box
    mask[8:10, 0:2] = 1  # 4 car pixels outside it
    mask[9, 8:10] = 3  # 2 bike pixels, no bike box
    mask[5, 0:5] = 6  # 5 guardrail pixels
    boxes = [Box(1, 0, 0, 4, 4, "fusion"), Box(2, 6, 0, 10, 5, "infrared")]
    return mask, boxes


def test_box_score_exact_numbers_and_edge_cases() -> None:
    score = BoxScore()
    mask, boxes = _frame()
    frame = score.update(mask, boxes)
    assert frame["car"] == {"pred_pixels": 8, "pred_in_box": 4, "objects": 1, "hits": 1}
    r = score.result()
    car, person, bike = (r["per_class"][k] for k in ("car", "person", "bike"))
    assert car["precision"] == 0.5 and car["hit_rate"] == 1.0 and car["fill"] == 0.25  # 4/16: a hit at 25 %
    assert car["F"] == pytest.approx(2 / 3)
    assert math.isnan(person["precision"]) and person["hit_rate"] == 0.0 and person["F"] == 0.0  # missed
    assert person["fill"] == 0.0
    assert bike["precision"] == 0.0 and math.isnan(bike["hit_rate"]) and math.isnan(bike["F"])  # no object
    assert r["mean_F"] == pytest.approx((2 / 3 + 0.0) / 2)  # bike has no object: not in the mean
    assert r["fill"] == pytest.approx((0.25 + 0.0) / 2)
    assert r["boxless_share"] == 0.05
    assert r["frames"] == 1 and r["pixels"] == 100


def test_box_score_below_quarter_is_a_miss_and_sums_accumulate_by_pixels() -> None:
    score = BoxScore()
    mask, boxes = _frame()
    score.update(mask, boxes)
    second = np.zeros((10, 10), np.uint8)
    second[0, 0:3] = 1  # 3 of 16 pixels of the car box: 0.1875 < 0.25, a miss; all 3 inside
    score.update(second, [Box(1, 0, 0, 4, 4)])
    car = score.result()["per_class"]["car"]
    assert car["precision"] == pytest.approx(7 / 11)  # pixel-weighted over both frames
    assert car["hit_rate"] == 0.5 and car["objects"] == 2
    assert car["fill"] == pytest.approx((0.25 + 3 / 16) / 2)
    other = BoxScore().merge(score)
    assert other.result()["per_class"]["car"] == car


def test_merged_object_counts_once_and_uses_the_union_of_its_boxes() -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[0:10, 0:3] = 1  # 30 car pixels
    # fusion box 10x10 at the origin, visible box shifted by 2 columns: IoU 80/120 -> one object,
    # union 10 rows x 12 columns = 120 px, 30 covered = 0.25 -> hit
    boxes = [Box(1, 0, 0, 10, 10, "fusion"), Box(1, 2, 0, 12, 10, "visible")]
    r = BoxScore().update(mask, boxes)
    assert r["car"]["objects"] == 1 and r["car"]["hits"] == 1
    s = BoxScore()
    s.update(mask, boxes)
    assert s.result()["per_class"]["car"]["fill"] == pytest.approx(30 / 120)
    # "mean" policy: consensus box columns 1..11 (100 px), 20 covered; "max": the fusion box, 30 %
    for policy, fill in (("mean", 0.2), ("max", 0.3)):
        s = BoxScore(object_box=policy)
        s.update(mask, boxes)
        assert s.result()["per_class"]["car"]["fill"] == pytest.approx(fill)


def test_ignored_pixels_are_no_prediction() -> None:
    mask, boxes = _frame()
    mask[0:2, 2:4] = 255  # 4 ignored pixels inside the car box: still uncovered
    mask[7, :] = 255  # 10 more ignored pixels
    s = BoxScore()
    s.update(mask, boxes)
    r = s.result()
    assert r["pixels"] == 86 and r["ignored_pixels"] == 14
    assert r["boxless_share"] == pytest.approx(5 / 86)
    assert r["per_class"]["car"]["fill"] == 0.25
    with pytest.raises(ValueError, match="collides"):
        BoxScore(ignore_index=3)


def test_f_score_edge_cases() -> None:
    assert f_score(0.5, 1.0) == pytest.approx(2 / 3)
    assert f_score(float("nan"), 0.0) == 0.0  # nothing predicted, objects present
    assert math.isnan(f_score(0.3, float("nan")))  # no objects
    assert f_score(0.0, 0.0) == 0.0
    assert math.isnan(BoxScore().result()["mean_F"])


def test_box_score_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"outside 0\.\.8"):
        BoxScore().update(np.full((4, 4), 9, np.uint8), [])
    with pytest.raises(ValueError, match="integer"):
        BoxScore().update(np.zeros((4, 4), np.float32), [])
    with pytest.raises(ValueError, match="outside the 4x4"):
        BoxScore().update(np.zeros((4, 4), np.uint8), [Box(1, 0, 0, 5, 4)])
    with pytest.raises(ValueError, match="object_box"):
        BoxScore(object_box="largest")


def test_box_dir_layout(tmp_path: Path) -> None:
    (tmp_path / "fusion").mkdir()
    (tmp_path / "visible").mkdir()
    (tmp_path / "fusion" / "a.txt").write_text("2 0.5 0.5 0.5 0.5\n")
    (tmp_path / "visible" / "a.txt").write_text("0 0.25 0.25 0.1 0.1\n")
    (tmp_path / "visible" / "b.txt").write_text("")  # annotated, no objects
    d = BoxDir(tmp_path)
    assert d.variants == ["fusion", "visible"] and d.names() == ["a", "b"]
    assert [(b.cls, Path(b.source).parent.name) for b in d.boxes("a", 8, 8)] == [
        (1, "fusion"),
        (2, "visible"),
    ]
    assert d.boxes("b", 8, 8) == [] and d.boxes("c", 8, 8) is None  # empty file vs not annotated
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"neither NAME\.txt box files nor any of the box folders"):
        BoxDir(tmp_path / "empty")


def test_box_dir_single_variant_and_dont_care(tmp_path: Path) -> None:
    boxes, ignore = tmp_path / "boxes", tmp_path / "ignore"
    boxes.mkdir()
    ignore.mkdir()
    (boxes / "a.txt").write_text("2 0.5 0.5 0.5 0.5\n")
    (boxes / "b.txt").write_text("")
    (ignore / "a.txt").write_text("0 0.05 0.5 0.1 0.5 0.31\n")  # a cut person: 6 columns
    d = BoxDir(boxes, ignore=ignore)
    assert d.single_variant and d.names() == ["a", "b"]
    a = d.boxes("a", 20, 20)
    assert [(b.cls, b.dont_care) for b in a] == [(1, False), (2, True)]
    assert d.boxes("b", 20, 20) == [] and d.boxes("c", 20, 20) is None
    assert all(not b.dont_care for b in BoxDir(boxes).boxes("a", 20, 20))  # no ignore folder given
    with pytest.raises(BoxFileError, match="expected 'class cx cy w h'"):
        parse_yolo("0 0.5 0.5 0.2 0.2 0.3\n", 10, 10)  # extra columns only in don't-care files
    with pytest.raises(FileNotFoundError, match="don't-care box folder"):
        BoxDir(boxes, ignore=tmp_path / "nope")


def test_dont_care_pixels_count_neither_for_nor_against_precision() -> None:
    mask = np.zeros((10, 10), np.uint8)
    mask[0:4, 0:4] = 2  # 16 person pixels inside a person box
    mask[6:10, 0:2] = 2  # 8 person pixels in a don't-care person region
    mask[6:10, 8:10] = 2  # 8 person pixels nowhere: false
    mask[0:2, 8:10] = 1  # 4 car pixels in the person don't-care box: a don't-care of another class counts
    real = Box(2, 0, 0, 4, 4)
    dont_care = [Box(2, 0, 6, 2, 10, dont_care=True), Box(2, 8, 0, 10, 2, dont_care=True)]
    score = BoxScore()
    frame = score.update(mask, [real, *dont_care])
    assert frame["person"] == {"pred_pixels": 24, "pred_in_box": 16, "objects": 1, "hits": 1}
    res = score.result()["per_class"]
    assert res["person"]["precision"] == pytest.approx(16 / 24)
    assert res["car"]["pred_pixels"] == 4 and res["car"]["objects"] == 0  # don't-care boxes are no objects
    # a pixel in both a real box and a don't-care box of its class counts as inside the real box
    overlap = BoxScore().update(mask, [real, Box(2, 0, 0, 4, 4, dont_care=True)])
    assert overlap["person"]["pred_in_box"] == 16 and overlap["person"]["pred_pixels"] == 32


ROADSCENE = BOXES.parents[1] / "roadscene"


@pytest.mark.skipif(not (ROADSCENE / "boxes").is_dir(), reason="../shared/data/roadscene not present")
def test_shared_roadscene_boxes_parse_with_the_documented_counts() -> None:
    d = BoxDir(ROADSCENE / "boxes", ignore=ROADSCENE / "ignore")
    names = d.names()
    assert d.single_variant and len(names) == 92
    counts = {1: 0, 2: 0, 3: 0}
    dont_care = 0
    for n in names:
        for b in d.boxes(n, 500, 330):
            dont_care += b.dont_care
            counts[b.cls] += not b.dont_care
    # ../shared/data/roadscene/README.md says person 120, bicycle 5, car 372; the files hold one more
    # person and one more car line (counted with awk too)
    assert counts == {2: 121, 3: 5, 1: 373} and dont_care > 0


@pytest.mark.skipif(not BOXES.is_dir(), reason="../shared/data/msrs/boxes not present")
def test_shared_msrs_boxes_parse_with_the_documented_counts() -> None:
    d = BoxDir(BOXES)
    names = d.names()
    assert len(names) == 241
    counts = {v: {1: 0, 2: 0, 3: 0} for v in d.variants}
    for n in names:
        for b in d.boxes(n, 640, 480):
            counts[Path(b.source).parent.name][b.cls] += 1
            assert 0 <= b.x0 < b.x1 <= 640 and 0 <= b.y0 < b.y1 <= 480
    # ../shared/data/msrs/README.md gives these two variants' counts (persons, bicycles, cars) ...
    assert counts["infrared"] == {2: 774, 3: 157, 1: 253}
    assert counts["visible"] == {2: 296, 3: 92, 1: 261}
    # ... but 466, 66, 237 for fusion, where the files hold 589, 91, 307 lines (checked with awk too; the
    # fusion files repeat some objects as near-duplicate boxes, which merging folds into one object)
    assert counts["fusion"] == {2: 589, 3: 91, 1: 307}
