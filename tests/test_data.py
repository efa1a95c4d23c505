"""The data side: SynthCity generation, the Cityscapes reader, transforms, the loader, the palette."""
import json
import re
import threading

import numpy as np
import pytest
from PIL import Image

from fastscnn.data.cityscapes import CityscapesDataset
from fastscnn.data.loader import DataLoader
from fastscnn.data.synthetic import CITIES, MARKER, generate_synthcity, main, synthcity_paths
from fastscnn.data.transforms import (EvalTransform, TrainTransform, color_jitter, jitter_normalize, normalize,
                                      random_hflip, random_scale_crop)
from fastscnn.errors import InputError, UnreadableImageError
from fastscnn.palette import (CLASS_NAMES, IGNORE_INDEX, LABEL_ID_TO_TRAIN_ID, NUM_CLASSES, PALETTE,
                              TRAIN_ID_TO_LABEL_ID, colorize)

SIZE = (48, 96)
VALID_LABEL_IDS = set(range(34))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate_synthcity(tmp_path_factory.mktemp("synth") / "sc", 5, 2, SIZE, seed=3)


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*.png"))


# --- SynthCity -----------------------------------------------------------------------------------
def test_synthcity_layout(synth):
    files = _files(synth)
    assert len(files) == 2 * (5 + 2) and not list(synth.rglob("*.part"))
    for split, n in (("train", 5), ("val", 2)):
        for i in range(n):
            image, label = synthcity_paths(synth, split, i)
            city = image.parent.name
            assert city in CITIES[split] and image.parent == synth / "leftImg8bit" / split / city
            assert label.parent == synth / "gtFine" / split / city
            assert re.fullmatch(rf"{city}_\d{{6}}_\d{{6}}_leftImg8bit\.png", image.name)
            assert label.name == image.name.replace("leftImg8bit", "gtFine_labelIds")
            with Image.open(image) as im, Image.open(label) as lb:
                assert im.mode == "RGB" and lb.mode == "L" and im.size == lb.size == SIZE[::-1]
                assert set(np.unique(np.asarray(lb)).tolist()) <= VALID_LABEL_IDS
    assert json.loads((synth / MARKER).read_text())["num_train"] == 5


def test_synthcity_is_deterministic(synth, tmp_path):
    again = generate_synthcity(tmp_path / "again", 5, 2, SIZE, seed=3)
    other = generate_synthcity(tmp_path / "other", 5, 2, SIZE, seed=4)
    assert _files(again) == _files(synth) == _files(other)
    for rel in _files(synth):
        assert (again / rel).read_bytes() == (synth / rel).read_bytes(), rel
    assert (other / _files(synth)[0]).read_bytes() != (synth / _files(synth)[0]).read_bytes()


def test_synthcity_is_idempotent(tmp_path):
    root = generate_synthcity(tmp_path / "sc", 2, 1, SIZE, seed=0)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*.png")}
    generate_synthcity(root, 2, 1, SIZE, seed=0)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.png")} == stamps
    missing = synthcity_paths(root, "train", 1)[1]
    missing.unlink()  # an incomplete folder is completed
    generate_synthcity(root, 2, 1, SIZE, seed=0)
    assert missing.is_file()
    with pytest.raises(ValueError, match="already holds a different SynthCity"):
        generate_synthcity(root, 3, 1, SIZE, seed=0)


def test_synthcity_leaves_other_data_alone(tmp_path):
    (tmp_path / "cityscapes" / "gtFine").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"holds leftImg8bit/ or gtFine/ but no synthcity.json"):
        generate_synthcity(tmp_path / "cityscapes", 1, 1, SIZE)
    assert not (tmp_path / "cityscapes" / MARKER).exists()


def test_synthcity_command_line(tmp_path, capsys):
    main(["--out", str(tmp_path / "cli"), "--train", "1", "--val", "1", "--height", "32", "--width", "64"])
    assert "SynthCity" in capsys.readouterr().out
    assert len(CityscapesDataset(tmp_path / "cli", "val")) == 1


def test_synthcity_scenes_hold_many_classes(synth):
    seen = set()
    for i in range(5):
        seen |= set(np.unique(CityscapesDataset(synth, "train")[i][1]).tolist())
    assert len(seen - {IGNORE_INDEX}) >= 10


# --- CityscapesDataset --------------------------------------------------------------------------
def test_dataset_reads_synthcity(synth):
    ds = CityscapesDataset(synth, "train")
    assert len(ds) == 5 and len(ds.files) == 5
    image, label = ds[0]
    assert image.shape == (*SIZE, 3) and image.dtype == np.uint8
    assert label.shape == SIZE and label.dtype == np.uint8
    raw = np.asarray(Image.open(ds.files[0][1]))
    np.testing.assert_array_equal(label, LABEL_ID_TO_TRAIN_ID[raw])
    assert set(np.unique(label).tolist()) <= set(range(NUM_CLASSES)) | {IGNORE_INDEX}


def test_dataset_cache_decodes_each_image_once_and_hands_out_read_only_arrays(synth, monkeypatch):
    from fastscnn.data import cityscapes
    reads, read_png = [], cityscapes.read_png
    monkeypatch.setattr(cityscapes, "read_png", lambda path, mode: reads.append(path) or read_png(path, mode))
    cached, plain = CityscapesDataset(synth, "train", cache=True), CityscapesDataset(synth, "train")
    first = cached[1]
    assert cached[1] is first and len(reads) == 2  # the image and its label, once
    for a, b in zip(first, plain[1]):
        np.testing.assert_array_equal(a, b)
        assert not a.flags.writeable and b.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        first[1][0, 0] = 0  # a transform that wrote into its input would corrupt every later read
    plain[1]
    assert len(reads) == 6  # no cache: decoded again each time


def _write(root, split, city, stem, image=None, label=None):
    """Write one Cityscapes-layout pair; ``None`` skips that file."""
    for folder, suffix, array in (("leftImg8bit", "_leftImg8bit.png", image),
                                  ("gtFine", "_gtFine_labelIds.png", label)):
        path = root / folder / split / city / (stem + suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        if array is not None:
            Image.fromarray(array).save(path)
    return root / "leftImg8bit" / split / city / (stem + "_leftImg8bit.png"), path


def test_dataset_maps_label_ids_to_train_ids(tmp_path):
    label_ids = np.array([[7, 8, 0, 26], [33, 9, 24, 23]], dtype=np.uint8)  # 9 = parking: ignored
    _write(tmp_path, "val", "x", "x_000000_000019", np.zeros((2, 4, 3), np.uint8), label_ids)
    _, label = CityscapesDataset(tmp_path, "val")[0]
    np.testing.assert_array_equal(label, [[0, 1, 255, 13], [18, 255, 11, 10]])


def test_dataset_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Cityscapes root .*nowhere not found.*leftImg8bit/ and gtFine/"):
        CityscapesDataset(tmp_path / "nowhere")


def test_dataset_missing_split_folder(tmp_path):
    (tmp_path / "leftImg8bit" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"split folder .*leftImg8bit.val not found"):
        CityscapesDataset(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match=r"split folder .*gtFine.train not found"):
        CityscapesDataset(tmp_path, "train")


def test_dataset_empty_split(tmp_path):
    (tmp_path / "leftImg8bit" / "train" / "city").mkdir(parents=True)
    (tmp_path / "gtFine" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no images in .*leftImg8bit.train: expected files .*_leftImg8bit\.png"):
        CityscapesDataset(tmp_path, "train")


def test_dataset_image_without_label(tmp_path):
    _write(tmp_path, "train", "c", "c_000000_000019", np.zeros((2, 2, 3), np.uint8), None)
    with pytest.raises(FileNotFoundError, match=r"label file .*c_000000_000019_gtFine_labelIds\.png not found "
                                                r"for image .*c_000000_000019_leftImg8bit\.png"):
        CityscapesDataset(tmp_path, "train")


def test_dataset_size_mismatch(tmp_path):
    _write(tmp_path, "train", "c", "c_000000_000019", np.zeros((4, 6, 3), np.uint8), np.zeros((4, 5), np.uint8))
    ds = CityscapesDataset(tmp_path, "train")
    with pytest.raises(ValueError, match=r"size mismatch: image .*\.png is \(4, 6\) .* label .* is \(4, 5\)"):
        ds[0]


@pytest.mark.parametrize("damage", ["garbage image", "truncated image", "garbage label", "colour label"])
def test_dataset_unreadable_file(tmp_path, damage):
    image_path, label_path = _write(tmp_path, "train", "c", "c_000000_000019",
                                    np.full((16, 16, 3), 9, np.uint8), np.full((16, 16), 7, np.uint8))
    bad = image_path if "image" in damage else label_path
    if damage.startswith("garbage"):
        bad.write_bytes(b"this is not a png")
    elif damage == "truncated image":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(bad)
        bad.write_bytes(bad.read_bytes()[:300])
    else:
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(bad)
    ds = CityscapesDataset(tmp_path, "train")
    expected = "expected an 8-bit single-channel" if damage == "colour label" else "cannot read image file"
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}: {expected}") as error:
        ds[0]
    # only undecodable files are the kind training skips; a colour label is a data set mistake
    assert isinstance(error.value, UnreadableImageError) == (damage != "colour label")
    assert isinstance(error.value, InputError)


# --- transforms ---------------------------------------------------------------------------------
def _aligned_sample(rng, shape=(24, 40), block=4):
    """A label of square blocks and an image whose red channel is 10 * label: alignment is checkable."""
    small = rng.integers(0, NUM_CLASSES, (shape[0] // block, shape[1] // block)).astype(np.uint8)
    label = np.kron(small, np.ones((block, block), np.uint8))
    image = np.stack([label * 10, rng.integers(0, 255, shape), np.zeros(shape)], -1).astype(np.uint8)
    return image, label


def test_hflip_moves_image_and_label_together():
    image, label = _aligned_sample(np.random.default_rng(0))
    rng = np.random.default_rng(0)
    flipped_image, flipped_label = random_hflip(image, label, rng, p=1.0)
    np.testing.assert_array_equal(flipped_label, label[:, ::-1])
    np.testing.assert_array_equal(flipped_image, image[:, ::-1])
    back_image, back_label = random_hflip(flipped_image, flipped_label, rng, p=1.0)
    np.testing.assert_array_equal(back_image, image)
    np.testing.assert_array_equal(back_label, label)
    same = random_hflip(image, label, rng, p=0.0)
    assert same[0] is image and same[1] is label


def test_crop_pads_with_zero_and_ignore():
    image, label = _aligned_sample(np.random.default_rng(1), (12, 20))
    out_image, out_label = random_scale_crop(image, label, np.random.default_rng(0), (16, 28), (1.0, 1.0))
    assert out_image.shape == (16, 28, 3) and out_label.shape == (16, 28)
    np.testing.assert_array_equal(out_label[:12, :20], label)
    np.testing.assert_array_equal(out_image[:12, :20], image)
    assert (out_label[12:] == IGNORE_INDEX).all() and (out_label[:, 20:] == IGNORE_INDEX).all()
    assert (out_image[12:] == 0).all() and (out_image[:, 20:] == 0).all()


def test_crop_keeps_alignment_and_varies():
    image, label = _aligned_sample(np.random.default_rng(2))
    corners = set()
    for seed in range(8):
        out_image, out_label = random_scale_crop(image, label, np.random.default_rng(seed), 8, (1.0, 1.0))
        assert out_label.shape == (8, 8)
        np.testing.assert_array_equal(out_image[..., 0], out_label * 10)
        corners.add(out_image[..., 1].tobytes())
    assert len(corners) > 1


def _scale_then_crop(image, label, rng, crop_size, scales):
    """The slow way random_scale_crop must agree with: resize the whole image, then pad and crop."""
    s = rng.uniform(*scales)
    size = (max(1, round(label.shape[1] * s)), max(1, round(label.shape[0] * s)))
    image = np.array(Image.fromarray(image).resize(size, Image.BILINEAR))
    label = np.array(Image.fromarray(label).resize(size, Image.NEAREST))
    (ch, cw), (h, w) = crop_size, label.shape
    image = np.pad(image, ((0, max(ch - h, 0)), (0, max(cw - w, 0)), (0, 0)))
    label = np.pad(label, ((0, max(ch - h, 0)), (0, max(cw - w, 0))), constant_values=IGNORE_INDEX)
    y, x = rng.integers(0, label.shape[0] - ch + 1), rng.integers(0, label.shape[1] - cw + 1)
    return image[y:y + ch, x:x + cw], label[y:y + ch, x:x + cw]


@pytest.mark.parametrize("seed", range(12))
def test_scale_crop_resamples_only_the_window_and_agrees_with_scaling_everything(seed):
    """Same window, same pixels as resizing the whole image and cropping: grey levels within 1
    (PIL rounds the window's source points differently), and a label either equal or, where its
    source point lies exactly on a block border, the label of the next pixel over. The scaled
    image is larger or smaller than the crop."""
    rng = np.random.default_rng(100 + seed)
    shape = tuple(int(v) * 8 for v in rng.integers(3, 40, 2))
    crop = tuple(int(v) for v in rng.integers(8, 160, 2))
    image, label = _aligned_sample(rng, shape, block=8)
    image[..., 2] = rng.integers(0, 256, shape)  # a channel with detail at every pixel
    out_image, out_label = random_scale_crop(image, label, np.random.default_rng(seed), crop, (0.5, 2.0))
    ref_image, ref_label = _scale_then_crop(image, label, np.random.default_rng(seed), crop, (0.5, 2.0))
    assert out_image.shape == (*crop, 3) and out_label.shape == crop
    assert np.abs(out_image.astype(int) - ref_image).max() <= 1
    near = np.pad(ref_label, 1, mode="edge")
    neighbours = [near[1 + dy:near.shape[0] - 1 + dy, 1 + dx:near.shape[1] - 1 + dx]
                  for dy, dx in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))]
    assert np.any([out_label == n for n in neighbours], axis=0).all()
    assert (out_label == ref_label).mean() > 0.9
    np.testing.assert_array_equal(out_label == IGNORE_INDEX, ref_label == IGNORE_INDEX)
    assert set(np.unique(out_label)) <= set(np.unique(label)) | {IGNORE_INDEX}


def test_color_jitter():
    image = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(color_jitter(image, np.random.default_rng(0), 0.0, 0.0), image)
    out = color_jitter(image, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == image.shape and not np.array_equal(out, image)


def test_normalize():
    image = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    x = normalize(image)
    assert x.shape == (3, 5, 6) and x.dtype == np.float32 and x.flags.c_contiguous
    expected = (image[2, 3, 1] / 255 - 0.456) / 0.224
    assert x[1, 2, 3] == pytest.approx(expected, rel=1e-5)


def test_jitter_normalize_is_the_two_steps_in_one():
    image = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)[:, ::-1]
    for seed in range(4):
        np.testing.assert_array_equal(jitter_normalize(image, np.random.default_rng(seed)),
                                      normalize(color_jitter(image, np.random.default_rng(seed))))


def test_train_transform():
    image, label = _aligned_sample(np.random.default_rng(0), (48, 64))
    transform = TrainTransform((32, 40))
    x, y = transform(image, label, np.random.default_rng(7))
    assert x.shape == (3, 32, 40) and x.dtype == np.float32 and y.shape == (32, 40) and y.dtype == np.uint8
    assert set(np.unique(y)) <= set(np.unique(label)) | {IGNORE_INDEX}
    x2, y2 = transform(image, label, np.random.default_rng(7))
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = transform(image, label, np.random.default_rng(8))
    assert not np.array_equal(x, x3)


def test_eval_transform():
    image, label = _aligned_sample(np.random.default_rng(0))
    x, y = EvalTransform()(image, label)
    np.testing.assert_array_equal(x, normalize(image))
    np.testing.assert_array_equal(y, label)
    assert y.dtype == np.uint8


# --- DataLoader ---------------------------------------------------------------------------------
class _Toy:
    """In-memory dataset of ``n`` random (image, label) pairs; ``fail_at`` raises on that index."""

    def __init__(self, n, shape=(20, 24), fail_at=None, unreadable=()):
        rng = np.random.default_rng(0)
        self.items = [_aligned_sample(rng, shape) for _ in range(n)]
        self.fail_at = fail_at
        self.unreadable = unreadable

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        if i == self.fail_at:
            raise RuntimeError(f"broken sample {i}")
        if i in self.unreadable:
            raise UnreadableImageError(f"image{i}.png: cannot read image file")
        return self.items[i]


def _loader_threads():
    return [t for t in threading.enumerate() if t.name.startswith("DataLoader")]


def test_loader_shapes_and_length(synth):
    loader = DataLoader(CityscapesDataset(synth, "train"), batch_size=2)
    assert len(loader) == 3
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(2, 3, *SIZE)] * 2 + [(1, 3, *SIZE)]
    assert all(x.dtype == np.float32 and y.dtype == np.uint8 and y.shape == (x.shape[0], *SIZE) for x, y in batches)
    assert len(DataLoader(CityscapesDataset(synth, "train"), batch_size=2, drop_last=True)) == 2
    assert len(list(DataLoader(CityscapesDataset(synth, "train"), batch_size=2, drop_last=True))) == 2


def test_loader_is_deterministic():
    dataset = _Toy(11)

    def run(num_workers, epoch=0):
        loader = DataLoader(dataset, 3, shuffle=True, transform=TrainTransform((16, 16)), seed=5,
                            num_workers=num_workers, prefetch=2)
        loader.set_epoch(epoch)
        return [np.concatenate([x.ravel(), y.ravel()]) for x, y in loader]

    first = run(2)
    assert len(first) == 4
    for other in (run(2), run(3), run(0)):  # same batches whatever the threads do
        for a, b in zip(first, other, strict=True):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], run(2, epoch=1)[0])


def test_loader_resumes_mid_epoch():
    loader = DataLoader(_Toy(10), 3, shuffle=True, transform=TrainTransform((8, 8)), seed=1)
    loader.set_epoch(2)
    whole = list(loader)
    rest = list(loader.iterate(start=2))
    assert len(rest) == len(whole) - 2
    for (x, y), (x2, y2) in zip(whole[2:], rest, strict=True):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)


def test_loader_shuffles_per_epoch_and_covers_all():
    dataset = _Toy(10)
    loader = DataLoader(dataset, 10, shuffle=True, seed=0)
    fingerprints = {normalize(image)[1, 0, :6].tobytes(): i for i, (image, _) in enumerate(dataset.items)}
    orders = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        (x, y), = list(loader)
        orders.append([fingerprints[sample[1, 0, :6].tobytes()] for sample in x])
        assert sorted(orders[-1]) == list(range(10))
        np.testing.assert_array_equal(y, np.stack([dataset.items[i][1] for i in orders[-1]]))
    assert orders[0] != orders[1]
    (x, y), = list(DataLoader(dataset, 10, shuffle=False))
    np.testing.assert_array_equal(y, np.stack([label for _, label in dataset.items]))


def test_loader_leaves_no_threads_after_break():
    assert not _loader_threads()
    for _ in DataLoader(_Toy(20), 2, num_workers=2, prefetch=3):
        assert _loader_threads()
        break
    assert not _loader_threads()
    it = iter(DataLoader(_Toy(20), 2, num_workers=2))
    next(it)
    del it
    assert not _loader_threads()


def test_loader_propagates_errors_and_stops_threads():
    with pytest.raises(RuntimeError, match="broken sample 5"):
        for _ in DataLoader(_Toy(12, fail_at=5), 2, num_workers=2):
            pass
    assert not _loader_threads()


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_skips_unreadable_samples_when_asked(workers):
    (x0, _), (x1, _) = DataLoader(_Toy(6), 3, num_workers=workers)
    loader = DataLoader(_Toy(6, unreadable=(4,)), 3, num_workers=workers, prefetch=2, skip_unreadable=True)
    batches = iter(loader)
    first, _ = next(batches)
    assert loader.skipped == []  # the second batch is built already, but not handed out
    second, _ = next(batches)
    assert loader.skipped == ["image4.png: cannot read image file"]
    np.testing.assert_array_equal(first, x0)
    np.testing.assert_array_equal(second, x1[[0, 2]])  # samples 3 and 5, as they would have been
    with pytest.raises(UnreadableImageError, match="image4.png"):
        list(DataLoader(_Toy(6, unreadable=(4,)), 3, num_workers=workers))
    with pytest.raises(InputError, match="every image of a batch is unreadable: image0.png.*; image1.png"):
        list(DataLoader(_Toy(4, unreadable=(0, 1)), 2, num_workers=workers, skip_unreadable=True))


def test_loader_rejects_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(_Toy(2), 0)
    with pytest.raises(ValueError, match="prefetch"):
        DataLoader(_Toy(2), 1, prefetch=0)


# --- palette ------------------------------------------------------------------------------------
def test_palette_matches_cityscapes_table():
    from cityscapesscripts.helpers.labels import id2label, trainId2label

    assert len(CLASS_NAMES) == NUM_CLASSES == 19
    for train_id in range(NUM_CLASSES):
        assert trainId2label[train_id].name == CLASS_NAMES[train_id]
        assert tuple(PALETTE[train_id]) == trainId2label[train_id].color
        assert LABEL_ID_TO_TRAIN_ID[TRAIN_ID_TO_LABEL_ID[train_id]] == train_id
    for label_id, label in id2label.items():
        if label_id >= 0:
            expected = label.trainId if 0 <= label.trainId < 255 else 255
            assert LABEL_ID_TO_TRAIN_ID[label_id] == expected


def test_colorize():
    rgb = colorize(np.array([[0, 13], [255, 18]]))
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert tuple(rgb[0, 0]) == (128, 64, 128) and tuple(rgb[0, 1]) == (0, 0, 142)
    assert tuple(rgb[1, 0]) == (0, 0, 0) and tuple(rgb[1, 1]) == (119, 11, 32)
