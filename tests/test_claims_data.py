"""The data of the claims sweeps: generated glyphs (deterministic, a fixed disjoint split, difficulty
set by parameters) and the embedded digits made harder, and both named by a sweep spec."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dynsweep.data import EmbeddedDigitsDataModule, Glyphs, GlyphsDataModule
from dynsweep.sweep.config import SweepConfigError, load_config, parse_config

SMALL = {"train_per_class": 20, "val_per_class": 10}
ROOT = Path(__file__).resolve().parents[1]


def digest(images: torch.Tensor) -> str:
    return hashlib.sha256(images.numpy().tobytes()).hexdigest()


def test_glyphs_shapes_classes_and_normalisation():
    train, val = Glyphs("train", augment=False, **SMALL), Glyphs("val", **SMALL)
    assert len(train) == 200 and len(val) == 100
    image, label = val[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and label.dtype == torch.int64
    assert torch.bincount(train.labels).tolist() == [20] * 10 and torch.bincount(val.labels).tolist() == [10] * 10
    # Normalised by the training split's statistics.
    assert abs(train.images.mean().item()) < 1e-4 and train.images.std().item() == pytest.approx(1, abs=1e-3)
    # Augmented training images are random crops of the padded image; validation ones are fixed.
    augmented = Glyphs("train", **SMALL)
    assert augmented.images.shape[-1] == 32 and augmented[0][0].shape == (1, 28, 28)
    torch.manual_seed(0)
    assert len({digest(augmented[0][0]) for _ in range(20)}) > 1
    assert torch.equal(val[5][0], val[5][0])
    assert Glyphs("val", num_classes=4, size=32, **SMALL)[0][0].shape == (1, 32, 32)


def test_glyphs_are_the_same_in_every_process():
    here = Glyphs("val", **SMALL).images
    code = (
        "import hashlib; from dynsweep.data import Glyphs; "
        "print(hashlib.sha256(Glyphs('val', train_per_class=20, val_per_class=10).images.numpy().tobytes()).hexdigest())"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == digest(here)
    assert not torch.equal(here, Glyphs("val", seed=1, **SMALL).images)


def test_glyphs_split_is_disjoint_and_validation_independent_of_training_size():
    train = Glyphs("train", augment=False, **SMALL).images.flatten(1)
    val = Glyphs("val", **SMALL).images.flatten(1)
    assert len({digest(x) for x in train}) == len(train) and len({digest(x) for x in val}) == len(val)
    assert not {digest(x) for x in train} & {digest(x) for x in val}
    # Nearest training image of each validation image is never (close to) the same image.
    assert torch.cdist(val, train).min().item() > 1.0
    more = Glyphs("val", train_per_class=40, val_per_class=10)
    assert torch.equal(more.labels, Glyphs("val", **SMALL).labels)
    # Only the normalisation (the training split's statistics) may differ.
    assert torch.allclose(
        more.images * more.std + more.mean, Glyphs("val", **SMALL).images * more.std + more.mean, atol=0.1
    )


def test_glyphs_difficulty_parameters_change_the_images():
    still = dict(jitter=0, rotation=0, scale=0, shear=0, translate=0, width_jitter=0, clutter=0, noise=0)
    easy = Glyphs("val", style=still, **SMALL)
    # With every distortion off, all images of a class are the same picture.
    for c in range(10):
        members = easy.images[easy.labels == c]
        assert torch.equal(members, members[:1].expand_as(members))
    base = Glyphs("val", **SMALL).images
    for change in ({"noise": 0.4}, {"clutter": 8}, {"rotation": 90.0}, {"jitter": 0.1}, {"stroke_width": 3.0}):
        assert not torch.equal(Glyphs("val", style=change, **SMALL).images, base), change

    # More distortion: images of one class spread further from their class mean.
    def spread(dataset: Glyphs) -> float:
        pixels = dataset.images.flatten(1) * dataset.std + dataset.mean
        return sum(pixels[dataset.labels == c].var(0).sum().item() for c in range(10))

    assert spread(Glyphs("val", style={"rotation": 60.0}, **SMALL)) > spread(
        Glyphs("val", style={"rotation": 5.0}, **SMALL)
    )
    assert spread(Glyphs("val", style={"noise": 0.4}, **SMALL)) > spread(Glyphs("val", style={"noise": 0.05}, **SMALL))


def test_glyphs_refuse_bad_parameters():
    for bad in ({"train_per_class": 0}, {"num_classes": 1}, {"points": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Glyphs("val", **{**SMALL, **bad})
    for style in ({"noise": -0.1}, {"rotation": 400}, {"blur": 1.0}):
        with pytest.raises(ValueError, match=next(iter(style))):
            Glyphs("val", style=style, **SMALL)
    with pytest.raises(ValueError, match="split"):
        Glyphs("test")


def test_glyphs_datamodule_batches():
    dm = GlyphsDataModule(batch_size=32, num_classes=6, size=32, **SMALL)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (6, 1, 32)
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (32, 1, 32, 32) and labels.max() < 6
    assert sum(len(y) for _, y in dm.val_dataloader()) == 60


def test_harder_digits_train_on_few_images_per_class():
    dm = EmbeddedDigitsDataModule(batch_size=50, train_per_class=50, padding=4)
    dm.setup("fit")
    assert len(dm.train_set) == 500 and len(dm.val_set) == 500
    assert torch.bincount(dm.train_set.labels).tolist() == [50] * 10


@pytest.mark.parametrize("name", ["claims_glyphs", "claims_digits"])
def test_claims_specs_validate_and_train_only_the_six_warm_starts(name):
    config = load_config(ROOT / "sweeps" / f"{name}.yaml")
    assert config.budget.n_trials == len(config.warm_start) == 6
    assert config.repeats.seeds >= 5
    assert {a.model for a in config.architectures} == {"resnet18", "mobilenet_v2"}


def test_a_spec_names_the_glyphs_module_and_bad_names_fail():
    raw = {
        "name": "g",
        "architectures": [{"model": "resnet18"}],
        "data": {"class": "GlyphsDataModule", "init_args": {"noise": 0.3, "clutter": 5}},
    }
    assert parse_config(raw).data["class"] == "GlyphsDataModule"
    with pytest.raises(SweepConfigError, match="data.class.*GlyphsDataModule"):
        parse_config({**raw, "data": {"class": "GlyphDataModule"}})
