"""SegmentationMetrics against the official Cityscapes evaluation (cityscapesscripts).

The oracle path: trainId maps -> labelId PNG files -> evalPixelLevelSemanticLabeling's
own evaluatePair (confusion matrix), getIouScoreForLabel, getIouScoreForCategory and
getScoreAverage.
"""
import json
import math

import numpy as np
import pytest
from PIL import Image

from fastscnn.metrics import SegmentationMetrics, strict_json, to_json
from fastscnn.palette import CATEGORY_NAMES, CLASS_NAMES, IGNORE_INDEX, TRAIN_ID_TO_LABEL_ID

ev = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
from cityscapesscripts.helpers.labels import category2labels, id2label, labels  # noqa: E402

IGNORED_LABEL_IDS = [l.id for l in labels if l.id >= 0 and l.ignoreInEval]


def _random_pair(rng, shape, classes):
    """A GT trainId map over ``classes[:-2]`` plus ~10% ignore, and a prediction that is
    right about 60% of the time, else any of ``classes`` (so the last two appear only in
    the prediction); ignored pixels get any prediction at all."""
    gt = rng.choice(classes[:-2], size=shape).astype(np.uint8)
    gt[rng.random(shape) < 0.1] = IGNORE_INDEX
    pred = np.where(rng.random(shape) < 0.6, gt, rng.choice(classes, size=shape)).astype(np.uint8)
    ignored = gt == IGNORE_INDEX
    pred[ignored] = rng.integers(0, 19, size=int(ignored.sum()))
    return pred, gt


def _to_label_ids(rng, train_ids):
    """trainIds -> labelIds; each ignore pixel becomes a random ignored labelId (void, parking, ...)."""
    out = np.zeros(train_ids.shape, dtype=np.uint8)
    valid = train_ids != IGNORE_INDEX
    out[valid] = TRAIN_ID_TO_LABEL_ID[train_ids[valid]]
    out[~valid] = rng.choice(IGNORED_LABEL_IDS, size=int((~valid).sum()))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_cityscapesscripts(tmp_path, seed):
    rng = np.random.default_rng(seed)
    # A random subset of classes, so some are absent from GT and prediction (IoU NaN) and
    # some appear only in the prediction (IoU 0); categories likewise.
    classes = np.sort(rng.choice(19, size=rng.integers(4, 15), replace=False))
    ours = SegmentationMetrics()
    args = ev.CArgs()
    args.evalInstLevelScore = False
    args.evalPixelAccuracy = False
    confusion = ev.generateMatrix(args)
    for k in range(2):
        pred, gt = _random_pair(rng, (23, 41), classes)
        ours.update(pred, gt)
        pred_file, gt_file = tmp_path / f"pred{k}.png", tmp_path / f"gt{k}_gtFine_labelIds.png"
        Image.fromarray(TRAIN_ID_TO_LABEL_ID[pred]).save(pred_file)
        Image.fromarray(_to_label_ids(rng, gt)).save(gt_file)
        ev.evaluatePair(str(pred_file), str(gt_file), confusion, {}, {}, args)

    class_scores = {id2label[l].name: ev.getIouScoreForLabel(l, confusion, args) for l in args.evalLabels}
    category_scores = {c: ev.getIouScoreForCategory(c, confusion, args) for c in category2labels}
    got = ours.compute()

    expected_classes = [class_scores[name] for name in CLASS_NAMES]
    np.testing.assert_allclose([got["iou_per_class"][n] for n in CLASS_NAMES], expected_classes, rtol=1e-12)
    assert any(math.isnan(v) for v in expected_classes) and any(v == 0 for v in expected_classes)
    assert got["miou"] == pytest.approx(ev.getScoreAverage(class_scores, args), rel=1e-12)
    np.testing.assert_allclose([got["iou_per_category"][c] for c in CATEGORY_NAMES],
                               [category_scores[c] for c in CATEGORY_NAMES], rtol=1e-12)
    assert got["category_miou"] == pytest.approx(ev.getScoreAverage(category_scores, args), rel=1e-12)

    evaluated = [l.id for l in labels if l.id >= 0 and not l.ignoreInEval]
    counted = confusion[evaluated, :]
    assert got["pixel_accuracy"] == pytest.approx(confusion[evaluated, evaluated].sum() / counted.sum(), rel=1e-12)


def test_known_values():
    m = SegmentationMetrics()
    target = np.array([[0, 0, 1, 255], [2, 2, 2, 255]])
    pred = np.array([[0, 1, 1, 7], [2, 2, 0, 255]])
    m.update(pred, target)
    got = m.compute()
    # road: TP 1, FP 1 (a building pixel), FN 1 -> 1/3; sidewalk: TP 1, FP 1 -> 1/2; building 2/3
    assert got["iou_per_class"]["road"] == pytest.approx(1 / 3)
    assert got["iou_per_class"]["sidewalk"] == pytest.approx(1 / 2)
    assert got["iou_per_class"]["building"] == pytest.approx(2 / 3)
    assert math.isnan(got["iou_per_class"]["sky"])
    assert got["miou"] == pytest.approx((1 / 3 + 1 / 2 + 2 / 3) / 3)
    assert got["pixel_accuracy"] == pytest.approx(4 / 6)
    # road and sidewalk are both "flat": the road pixel called sidewalk is a category hit
    assert got["iou_per_category"]["flat"] == pytest.approx(3 / 4)
    assert m.confusion.sum() == 6


def test_accumulates_and_resets():
    rng = np.random.default_rng(5)
    a, b = rng.integers(0, 19, (2, 2, 8, 8))
    one, two = SegmentationMetrics(), SegmentationMetrics()
    one.update(a[0], b[0])
    one.update(a[1], b[1])
    two.update(a, b)  # any shape: a batch at once
    np.testing.assert_array_equal(one.confusion, two.confusion)
    one.reset()
    assert one.confusion.sum() == 0 and math.isnan(one.compute()["miou"])


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"pred shape \(2, 3\) != target shape \(3, 2\)"):
        SegmentationMetrics().update(np.zeros((2, 3), int), np.zeros((3, 2), int))


@pytest.mark.parametrize("which", ["pred", "target"])
def test_ids_out_of_range_are_rejected(which):
    good, bad = np.zeros((2, 2), int), np.array([[0, 1], [26, 0]])  # 26 is the labelId of car
    pred, target = (bad, good) if which == "pred" else (good, bad)
    with pytest.raises(ValueError, match=rf"{which} holds ids outside \[0, 19\)"):
        SegmentationMetrics().update(pred, target)


def test_other_class_counts_and_table():
    m = SegmentationMetrics(num_classes=3)
    m.update(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2]))
    got = m.compute()
    assert set(got["iou_per_class"]) == {"0", "1", "2"} and "category_miou" not in got
    assert got["iou_per_class"]["1"] == pytest.approx(1 / 2)
    table = SegmentationMetrics()
    table.update(np.array([0, 13]), np.array([0, 13]))
    text = table.format_table()
    assert "road" in text and "bicycle" in text and "mIoU" in text and "1.000" in text


def test_json_is_strict_with_null_for_absent_classes():
    m = SegmentationMetrics()
    m.update(np.array([0, 13]), np.array([0, 13]))
    text = to_json(m.compute())

    def strict(constant):
        raise AssertionError(f"not JSON: {constant}")
    scores = json.loads(text, parse_constant=strict)
    assert scores["iou_per_class"]["road"] == 1.0 and scores["iou_per_class"]["sky"] is None
    assert scores["iou_per_category"]["nature"] is None
    assert strict_json({"a": [float("inf"), -float("inf"), 1.5], "b": (2, "x")}) == {"a": [None, None, 1.5],
                                                                                      "b": [2, "x"]}


def test_table_lists_categories():
    m = SegmentationMetrics()
    m.update(np.array([0, 1, 13]), np.array([0, 0, 13]))  # sidewalk for road: a category hit
    rows = dict(line.rsplit(None, 1) for line in m.format_table().splitlines()
                if line.strip() and not line.startswith("-"))
    assert rows["road"] == "0.500" and rows["flat"] == "1.000" and rows["vehicle"] == "1.000"
    assert rows["sky"] == "nan" and rows["category mIoU"] == "1.000"
