"""LaMa-style mask generation and image/mask pairing."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from generator.io import find_image_mask_pairs
from trainer.data.masks import MaskGenerator, draw_segment, seeded_masks


def is_box_mask(mask: np.ndarray) -> bool:
    """Union of <= 3 axis-aligned boxes: edges fall on <= 6 columns and <= 6 rows.

    Round-capped strokes have edges on many distinct columns and rows.
    """
    m = mask[0].astype(np.int8)
    cols = np.flatnonzero(np.abs(np.diff(m, axis=1)).any(axis=0))
    rows = np.flatnonzero(np.abs(np.diff(m, axis=0)).any(axis=1))
    return m.any() and len(cols) <= 6 and len(rows) <= 6


def sample(gen: MaskGenerator, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([gen(rng) for _ in range(n)])


def test_shape_dtype_values_non_square():
    masks = sample(MaskGenerator((96, 160)), 20, seed=0)
    assert masks.shape == (20, 1, 96, 160) and masks.dtype == np.float32
    assert set(np.unique(masks)) == {0.0, 1.0}
    assert masks.reshape(20, -1).max(axis=1).min() == 1.0  # never empty


def test_deterministic_for_a_seed():
    gen = MaskGenerator(256)
    np.testing.assert_array_equal(sample(gen, 10, seed=3), sample(MaskGenerator(256), 10, seed=3))
    assert not np.array_equal(sample(gen, 10, seed=3), sample(gen, 10, seed=4))


def test_box_heuristic_separates_the_two_kinds():
    assert all(is_box_mask(m) for m in sample(MaskGenerator(256, irregular_proba=0), 50, seed=0))
    assert not any(is_box_mask(m) for m in sample(MaskGenerator(256, box_proba=0), 50, seed=0))


def test_coverage_statistics_at_256():
    # Measured over 4000 masks: mixed mean 0.316 (std 0.194, 5-95% 0.06-0.69),
    # strokes alone 0.410, boxes alone 0.21. A cv2 port of LaMa's own code gives
    # 0.412 and 0.211. Bands are about +-4 standard errors for 200 masks.
    masks = sample(MaskGenerator(256), 200, seed=0)
    coverage = masks.mean(axis=(1, 2, 3))
    assert 0.25 < coverage.mean() < 0.38
    assert coverage.min() > 0.0 and coverage.max() < 1.0
    boxes = np.array([is_box_mask(m) for m in masks])
    assert 0.35 < boxes.mean() < 0.65  # equal probabilities: strokes OR boxes
    assert 0.34 < coverage[~boxes].mean() < 0.48
    assert 0.17 < coverage[boxes].mean() < 0.26


@pytest.mark.parametrize("size", [128, 512])
def test_scales_with_crop_size(size):
    coverage = sample(MaskGenerator(size), 100, seed=1).mean()
    assert 0.23 < coverage < 0.40  # same band as at 256 px (fewer masks)

    # Box sizes and margins scale linearly: 30..150 px and 10 px at 256.
    boxes = sample(MaskGenerator(size, irregular_proba=0), 30, seed=2)[:, 0]
    margin = round(10 * size / 256)
    assert not boxes[:, :margin].any() and not boxes[:, -margin:].any()
    assert not boxes[:, :, :margin].any() and not boxes[:, :, -margin:].any()
    assert boxes.sum(axis=(1, 2)).min() >= (30 * size / 256) ** 2
    assert boxes.sum(axis=(1, 2)).max() <= 3 * (150 * size / 256) ** 2


def test_stroke_width_scales():
    # One single-segment stroke: its area grows ~4x from 256 to 512 px.
    def stroke_area(size):
        gen = MaskGenerator(size, box_proba=0, irregular_max_times=1)
        return sample(gen, 200, seed=5).sum(axis=(1, 2, 3)).mean()

    assert 3.2 < stroke_area(512) / stroke_area(256) < 4.8


def test_segment_matches_opencv_line():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    ious, ratios = [], []
    for _ in range(100):
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, 256, 4))
        width = int(rng.integers(5, 105))
        ref = np.zeros((256, 256), np.uint8)
        cv2.line(ref, (x0, y0), (x1, y1), 1, width)
        canvas = Image.new("L", (256, 256))
        draw_segment(ImageDraw.Draw(canvas), (x0, y0), (x1, y1), width)
        ours, ref = np.asarray(canvas) > 0, ref > 0
        ious.append((ours & ref).sum() / (ours | ref).sum())
        ratios.append(ours.sum() / ref.sum())
    assert np.mean(ious) > 0.94 and min(ious) > 0.7
    assert 0.97 < np.mean(ratios) < 1.03


def test_invalid_parameters():
    with pytest.raises(ValueError, match="probabilities"):
        MaskGenerator(256, irregular_proba=0, box_proba=0)
    with pytest.raises(ValueError, match="too small"):
        MaskGenerator(4, box_margin=200)


def test_seeded_masks():
    masks = seeded_masks(6, 64, seed=1)
    assert masks.shape == (6, 1, 64, 64) and masks.dtype == torch.float32
    torch.testing.assert_close(masks, seeded_masks(6, 64, seed=1))
    torch.testing.assert_close(masks[:3], seeded_masks(3, 64, seed=1))  # prefix-stable
    assert not torch.equal(masks, seeded_masks(6, 64, seed=2))
    assert len({m.numpy().tobytes() for m in masks}) == 6
    assert seeded_masks(2, (32, 48)).shape == (2, 1, 32, 48)


def test_find_image_mask_pairs(tmp_path):
    blank = Image.new("RGB", (4, 4))
    (tmp_path / "sub").mkdir()
    for name in [
        "a.png", "a_mask.png", "a_mask002.png", "a_mask.jpg",  # lossy mask: ignored
        "a_1.png", "a_1_mask.png", "ab.png",
        "b.JPG", "b_mask.png", "sub/c.webp", "sub/c_mask1.png", "d.jpeg", "notes.txt",
    ]:
        blank.save(tmp_path / name, format="PNG")
    pairs = find_image_mask_pairs(tmp_path)
    got = {str(img.relative_to(tmp_path)): [m.name for m in masks] for img, masks in pairs}
    assert got == {
        "a.png": ["a_mask.png", "a_mask002.png"],
        "a_1.png": ["a_1_mask.png"],
        "ab.png": [],
        "b.JPG": ["b_mask.png"],
        "d.jpeg": [],
        "sub/c.webp": ["c_mask1.png"],
    }
    assert [p for p, _ in pairs] == sorted(p for p, _ in pairs)


def test_find_image_mask_pairs_custom_suffix(tmp_path):
    for name in ["x.png", "x-seg.png", "x-seg2.png", "x_mask.png"]:
        Image.new("L", (4, 4)).save(tmp_path / name)
    pairs = find_image_mask_pairs(tmp_path, mask_suffix="-seg")
    got = {img.name: [m.name for m in masks] for img, masks in pairs}
    assert got == {"x.png": ["x-seg.png", "x-seg2.png"], "x_mask.png": []}
