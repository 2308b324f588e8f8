"""Image listing, the embedded sample set, crop datasets and the DataModule."""

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from PIL import Image
from torch.utils.data import DataLoader

from trainer.data.images import (
    EpochSampler,
    FixedCropDataset,
    ImageMaskDataModule,
    RandomCropDataset,
    list_images,
    sample_images,
)

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


@pytest.fixture
def solid_images(tmp_path):
    """Three flat-coloured 24x40 images: a crop's colour tells which image it came from."""
    paths = []
    for i, colour in enumerate(COLOURS):
        paths.append(tmp_path / f"img{i}.png")
        Image.new("RGB", (40, 24), colour).save(paths[-1])
    return paths


@pytest.fixture
def gradient_image(tmp_path):
    """32 high, 64 wide, value 3*x in every channel: shows crops and flips."""
    row = (np.arange(64) * 3).astype(np.uint8)
    path = tmp_path / "gradient.png"
    Image.fromarray(np.repeat(np.tile(row, (32, 1))[..., None], 3, axis=2)).save(path)
    return path


def source_image(sample: dict) -> int:
    colour = sample["image"][:, 0, 0].mul(255).round().int().tolist()
    return COLOURS.index(tuple(colour))


def test_list_images(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    images = ["b.png", "A.JPG", "sub/c.webp", "sub/deeper/d.jpeg"]
    for name in images + ["b_mask.png", "sub/c_mask01.png", "notes.txt", "e.gif"]:
        (tmp_path / name).write_bytes(b"")
    got = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert got == ["A.JPG", "b.png", "sub/c.webp", "sub/deeper/d.jpeg"]


def test_sample_images_splits():
    train, val, all_ = sample_images("train"), sample_images("val"), sample_images("all")
    assert train == sample_images() and len(train) >= 8 and len(val) == 5
    assert not set(train) & set(val)
    assert sorted(train + val) == all_
    assert all(p.is_file() for p in all_)
    assert {p.stem for p in val} == {"astronaut", "coffee", "rocket", "gravel", "camera"}
    assert {"motorcycle_left", "motorcycle_right"} <= {p.stem for p in train}  # stereo pair together
    assert not {"chessboard_GRAY", "logo", "phantom", "horse", "text"} & {p.stem for p in all_}
    with pytest.raises(ValueError, match="unknown split"):
        sample_images("test")


def test_random_crops_shapes_ranges_and_determinism():
    paths = sample_images("val")[:2]  # astronaut (RGB), camera (grey)
    ds = RandomCropDataset(paths, size=64, samples_per_epoch=6, seed=0)
    assert len(ds) == 6
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 64, 64) and item["mask"].dtype == torch.float32
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}

    again = RandomCropDataset(paths, size=64, samples_per_epoch=6, seed=0)
    for key in [3, (0, 3), (2, 5)]:
        torch.testing.assert_close(ds[key], again[key])
    torch.testing.assert_close(ds[3], ds[(0, 3)])
    other_epoch, other_seed = ds[(1, 3)], RandomCropDataset(paths, size=64, samples_per_epoch=6, seed=1)[3]
    for other in (other_epoch, other_seed):
        assert not torch.equal(other["mask"], ds[3]["mask"])
    with pytest.raises(IndexError):
        ds[6]


def test_small_folders_repeat_evenly_and_large_ones_rotate(solid_images):
    ds = RandomCropDataset(solid_images, size=16, samples_per_epoch=6)
    for epoch in range(3):
        counts = np.bincount([source_image(ds[(epoch, i)]) for i in range(6)], minlength=3)
        assert counts.tolist() == [2, 2, 2]
    sub = RandomCropDataset(solid_images, size=16, samples_per_epoch=1)
    assert len({source_image(sub[(epoch, 0)]) for epoch in range(12)}) == 3


def test_crop_scale_and_flip(gradient_image):
    def first_columns(ds, n=24):
        return [ds[i]["image"][0, 0, :2].tolist() for i in range(n)]

    still = RandomCropDataset([gradient_image], size=32, scale=(1.0, 1.0), flip=False, samples_per_epoch=24)
    cols = first_columns(still)
    assert all(b > a for a, b in cols)  # no flips: values increase left to right
    assert len({a for a, _ in cols}) > 5  # random horizontal offsets
    assert max(a for a, _ in cols) <= 3 * 32 / 255 + 1e-6  # crop lies within the unscaled image

    flipping = RandomCropDataset([gradient_image], size=32, scale=(1.0, 1.0), samples_per_epoch=24)
    flipped = [b < a for a, b in first_columns(flipping)]
    assert 0 < sum(flipped) < len(flipped)

    zoomed = RandomCropDataset([gradient_image], size=32, scale=(2.0, 2.0), flip=False, samples_per_epoch=24)
    steps = [b - a for a, b in first_columns(zoomed)]
    assert np.allclose(steps, 1.5 / 255, atol=0.2 / 255)  # 2x upscaled: half the step per pixel


def test_random_crop_rejects_bad_arguments(solid_images):
    with pytest.raises(ValueError):
        RandomCropDataset([], size=16)
    with pytest.raises(ValueError, match="scale"):
        RandomCropDataset(solid_images, size=16, scale=(0.5, 1.0))


def test_epoch_sampler():
    sampler = EpochSampler(8, seed=0)
    first = list(sampler)
    assert len(sampler) == 8 and {e for e, _ in first} == {0}
    assert sorted(i for _, i in first) == list(range(8))
    assert list(sampler) == first  # same epoch, same order
    sampler.set_epoch(1)
    second = list(sampler)
    assert {e for e, _ in second} == {1} and [i for _, i in second] != [i for _, i in first]
    assert [i for _, i in EpochSampler(5, shuffle=False)] == list(range(5))


def test_batches_do_not_depend_on_worker_count(solid_images):
    ds = RandomCropDataset(solid_images, size=16, samples_per_epoch=8, seed=3)

    def batches(workers):
        sampler = EpochSampler(len(ds), seed=3)
        sampler.set_epoch(2)
        return list(DataLoader(ds, batch_size=4, sampler=sampler, num_workers=workers))

    serial, parallel = batches(0), batches(2)
    assert len(serial) == 2
    for a, b in zip(serial, parallel):
        torch.testing.assert_close(a, b)


def test_fixed_crops(gradient_image, solid_images):
    ds = FixedCropDataset([gradient_image, solid_images[0]], size=32, masks_per_image=2, seed=0)
    assert len(ds) == 4
    items = [ds[k] for k in range(4)]
    assert [it["index"] for it in items] == [0, 1, 2, 3]
    torch.testing.assert_close(items[0]["image"], items[1]["image"])  # same image, two masks
    assert not torch.equal(items[0]["mask"], items[1]["mask"])
    # Centre crop of a 64-wide image: columns 16..47.
    torch.testing.assert_close(items[0]["image"][:, :, 0], torch.full((3, 32), 48 / 255))
    torch.testing.assert_close(items[0]["image"][:, :, -1], torch.full((3, 32), 141 / 255))
    assert items[2]["image"].shape == (3, 32, 32)  # 24x40 image upscaled to short side 32

    again = FixedCropDataset([gradient_image, solid_images[0]], size=32, masks_per_image=2, seed=0)
    for k in range(4):
        torch.testing.assert_close(ds[k], again[k])
    images, masks = ds.batch()
    assert images.shape == (4, 3, 32, 32) and masks.shape == (4, 1, 32, 32)
    torch.testing.assert_close(images[3], items[3]["image"])
    torch.testing.assert_close(masks[1], items[1]["mask"])


def test_datamodule_on_sample_set():
    dm = ImageMaskDataModule(size=64, batch_size=4, val_batch_size=3, samples_per_epoch=8)
    dm.setup("fit")
    assert len(dm.train_set) == 8 and len(dm.val_set) == 5 * 2
    loader = dm.train_dataloader()
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["mask"].shape == (4, 1, 64, 64)
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (3, 3, 64, 64) and val["mask"].shape == (3, 1, 64, 64)
    assert val["index"].tolist() == [0, 1, 2]

    # Lightning's per-epoch hook reaches the sampler, so each epoch gets new crops.
    _set_sampler_epoch(loader, 5)
    assert {epoch for epoch, _ in loader.sampler} == {5}
    assert not torch.equal(next(iter(loader))["mask"], batch["mask"])


def test_train_seed_draws_other_crops_on_the_same_validation_set():
    def first_batches(**seeds):
        dm = ImageMaskDataModule(size=64, batch_size=4, val_batch_size=3, samples_per_epoch=8, **seeds)
        dm.setup("fit")
        return next(iter(dm.train_dataloader())), next(iter(dm.val_dataloader()))

    train, val = first_batches()
    same_train, _ = first_batches(train_seed=0)
    other_train, other_val = first_batches(train_seed=35)
    assert torch.equal(same_train["image"], train["image"]) and torch.equal(same_train["mask"], train["mask"])
    assert not torch.equal(other_train["mask"], train["mask"])
    assert torch.equal(other_val["image"], val["image"]) and torch.equal(other_val["mask"], val["mask"])


def test_datamodule_folders(tmp_path, solid_images):
    folder = str(solid_images[0].parent)
    dm = ImageMaskDataModule(
        train_dir=folder, val_dir=folder, size=16, batch_size=2, samples_per_epoch=4, masks_per_val_image=1
    )
    dm.setup("fit")
    assert len(dm.train_set) == 4 and len(dm.val_set) == 3
    assert next(iter(dm.train_dataloader()))["image"].shape == (2, 3, 16, 16)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"^no images found in '{empty}'$"):
        ImageMaskDataModule(train_dir=str(empty)).setup("fit")
    with pytest.raises(ValueError, match="does not exist"):
        ImageMaskDataModule(val_dir=str(tmp_path / "nope")).setup("validate")
