"""Tasks: real fits of a few steps on the embedded data (CPU), checkpoints that rebuild their
model, the temperature schedule, the optimiser's groups and schedule, and the bad inputs (another
architecture's checkpoint, data that does not fit, a NaN loss or NaN weights)."""

from __future__ import annotations

import csv
import math
import types
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from dynsweep.cost import count
from dynsweep.data import DigitCanvasDataModule, EmbeddedDigitsDataModule
from dynsweep.models import DynamicSpec, build_model, default_spec
from dynsweep.nn import CoefficientPredictor, DynamicConv2d
from dynsweep.tasks import (
    CheckpointMismatchError,
    ClassificationTask,
    NonFiniteError,
    SegmentationTask,
    TemperatureAnnealing,
    WarmupSchedule,
    param_groups,
    pixel_cross_entropy,
)
from dynsweep.tasks.callbacks import dyconv_predictors

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning",
    "ignore::DeprecationWarning",
    "ignore::FutureWarning",  # Lightning's own
)

SMALL = {"width_mult": 0.25}  # a static ResNet18 with 16..128 channels
DYNAMIC = {"width_mult": 0.25, "stages": [2, 3], "num_bases": 2, "mode": "dyconv", "temperature": 10.0}


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these models are tiny, and on a small machine shared with other jobs two
    OpenMP threads that wait for each other's core make a step 40 times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def trainer(tmp_path=None, max_steps=4, logger=False, callbacks=(), **kwargs) -> L.Trainer:
    options = dict(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        limit_val_batches=2,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        default_root_dir=tmp_path,
    )
    options.update(kwargs)
    return L.Trainer(callbacks=list(callbacks), **options)


def read_csv(path) -> list[dict[str, str]]:
    with open(path) as file:
        return list(csv.DictReader(file))


def read_yaml(path) -> dict:
    with open(path) as file:
        return yaml.safe_load(file)


def digits(batch_size=32) -> EmbeddedDigitsDataModule:
    return EmbeddedDigitsDataModule(batch_size=batch_size)


def weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------------- fit, metrics, cost
def test_fit_learns_and_logs_metrics_and_cost(tmp_path):
    L.seed_everything(0)
    task = ClassificationTask("resnet18", SMALL, lr=0.05, warmup_epochs=0.05)
    logger = CSVLogger(tmp_path, name="run")
    trainer(tmp_path, max_steps=60, logger=logger, val_check_interval=30, limit_val_batches=4).fit(task, digits())
    rows = read_csv(f"{logger.log_dir}/metrics.csv")
    val = [r for r in rows if r.get("val_acc1")]
    assert len(val) == 2 and all(r["val_acc5"] for r in val)
    # 60 steps on real digits (the val split is shuffled: 4 batches of 32 hold every digit):
    # well above the 10% of chance.
    assert float(val[-1]["val_acc1"]) > 0.3 and float(val[-1]["val_acc5"]) > 0.6
    losses = [float(r["train_loss"]) for r in rows if r.get("train_loss")]
    assert losses[-1] < losses[0]
    # MACs and parameters from the cost accounting, as hyper-parameters.
    hparams = read_yaml(f"{logger.log_dir}/hparams.yaml")
    expected = count(build_model("resnet18", SMALL, num_classes=10, in_channels=1, small_input=True), (1, 28, 28))
    assert hparams["macs"] == expected.macs == task.cost.macs
    assert hparams["params"] == expected.params == sum(p.numel() for p in task.model.parameters())
    assert hparams["spec"]["width_mult"] == 0.25 and hparams["model"] == "resnet18"


def test_top5_only_with_more_than_five_classes():
    assert set(ClassificationTask("resnet18", SMALL, num_classes=5).val_metrics) == {"val_acc1"}
    assert set(ClassificationTask("resnet18", SMALL, num_classes=6).val_metrics) == {"val_acc1", "val_acc5"}


def test_label_smoothing_is_the_training_loss():
    task = ClassificationTask("resnet18", SMALL, label_smoothing=0.1)
    logits, labels = torch.randn(8, 10), torch.randint(0, 10, (8,))
    expected = nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(task.criterion(logits, labels), expected)
    assert not torch.allclose(task.criterion(logits, labels), nn.functional.cross_entropy(logits, labels))


# ---------------------------------------------------------------------- checkpoints
def _fit_with_checkpoints(tmp_path, task, steps=2, **checkpoint_options):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=1, **checkpoint_options)
    trainer(tmp_path, max_steps=steps, callbacks=[checkpoint]).fit(task, digits(16))
    return checkpoint


def test_checkpoint_rebuilds_the_exact_model(tmp_path):
    task = ClassificationTask("resnet18", DynamicSpec(**DYNAMIC), temperature_epochs=0)
    checkpoint = _fit_with_checkpoints(tmp_path, task)
    loaded = ClassificationTask.load_from_checkpoint(checkpoint.last_model_path)
    assert type(loaded.hparams.spec) is dict and loaded.hparams.spec == DynamicSpec(**DYNAMIC).to_dict()
    assert sum(isinstance(m, DynamicConv2d) for m in loaded.model.modules()) > 0
    task.eval(), loaded.eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(task(x), loaded(x))
    saved = torch.load(checkpoint.last_model_path, weights_only=False)
    assert saved["dynsweep"]["architecture"]["model"] == "resnet18"
    assert saved["dynsweep"]["cost"]["macs"] == task.cost.macs


def test_preset_spec_is_stored_in_full(tmp_path):
    # spec=None stores the preset's whole spec: a later change to the preset cannot change the model.
    task = ClassificationTask("dy_resnet18", None, temperature_epochs=0)
    assert task.hparams.spec["dynamic_width"] == 0.5 and task.hparams.spec["num_bases"] == 6


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    checkpoint = _fit_with_checkpoints(tmp_path, ClassificationTask("resnet18", SMALL), steps=1)
    path = checkpoint.last_model_path
    with pytest.raises(CheckpointMismatchError, match=r"spec\.width_mult: 0\.25 vs 0\.5") as error:
        ClassificationTask.load_from_checkpoint(path, spec={"width_mult": 0.5})
    assert "ClassificationTask(model='resnet18'" in str(error.value)
    with pytest.raises(CheckpointMismatchError, match=r"model: 'resnet18' vs 'mobilenet_v2'"):
        ClassificationTask.load_from_checkpoint(path, model="mobilenet_v2", spec=None)
    with pytest.raises(CheckpointMismatchError, match=r"ClassificationTask\(.*SegmentationTask\("):
        SegmentationTask.load_from_checkpoint(path)


def test_resuming_another_architecture_keeps_the_checkpoint(tmp_path):
    checkpoint = _fit_with_checkpoints(tmp_path, ClassificationTask("resnet18", SMALL), steps=1)
    before = Path(checkpoint.last_model_path).read_bytes()
    other = ClassificationTask("resnet18", {"width_mult": 0.5})
    resume = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=1)
    with pytest.raises(CheckpointMismatchError, match="width_mult"):
        trainer(tmp_path, max_steps=3, callbacks=[resume]).fit(other, digits(16), ckpt_path=checkpoint.last_model_path)
    assert Path(checkpoint.last_model_path).read_bytes() == before


def test_a_plain_state_dict_is_not_a_task_checkpoint(tmp_path):
    task = ClassificationTask("resnet18", SMALL)
    torch.save({"state_dict": task.state_dict()}, tmp_path / "weights.pt")
    with pytest.raises(CheckpointMismatchError, match=r"weights\.pt is not a Lightning checkpoint"):
        ClassificationTask.load_from_checkpoint(tmp_path / "weights.pt", model="resnet18", spec=SMALL)
    # A Lightning checkpoint without the dynsweep record (written by another LightningModule).
    checkpoint = torch.load(_fit_with_checkpoints(tmp_path, task, steps=1).last_model_path, weights_only=False)
    del checkpoint["dynsweep"]
    torch.save(checkpoint, tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointMismatchError, match=r"foreign\.ckpt: .*no dynsweep architecture record"):
        ClassificationTask.load_from_checkpoint(tmp_path / "foreign.ckpt")


# ---------------------------------------------------------------------- temperature
class RecordTemperature(L.Callback):
    def __init__(self):
        self.values = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.values.append(float(dyconv_predictors(pl_module)[0].temperature))


def test_temperature_callback_anneals_dyconv_layers(tmp_path):
    task = ClassificationTask("resnet18", DYNAMIC, temperature_epochs=0)  # no schedule of its own
    assert {float(p.temperature) for p in dyconv_predictors(task)} == {10.0}
    record = RecordTemperature()
    anneal = TemperatureAnnealing(start=30.0, end=2.0, steps=4)
    trainer(tmp_path, max_steps=6, callbacks=[anneal, record]).fit(task, digits(16))
    assert record.values == pytest.approx([30.0, 23.0, 16.0, 9.0, 2.0, 2.0])
    assert {float(p.temperature) for p in dyconv_predictors(task)} == {2.0}
    # Every dyconv predictor follows, and the layers compute with it.
    assert len(dyconv_predictors(task)) == 4


def test_task_anneals_from_the_spec_temperature_by_epoch(tmp_path):
    task = ClassificationTask("resnet18", DYNAMIC, temperature_end=1.0, temperature_epochs=1.0)
    record = RecordTemperature()
    trainer(tmp_path, max_steps=3, callbacks=[record], limit_train_batches=10).fit(task, digits(16))
    assert record.values == pytest.approx([10.0, 9.1, 8.2])


def test_temperature_progress_by_epoch_fraction():
    anneal = TemperatureAnnealing(start=30.0, end=1.0, epochs=10)
    position = types.SimpleNamespace(current_epoch=4, num_training_batches=10, global_step=45)
    assert anneal.progress(position, batch_idx=5) == pytest.approx(0.45)
    assert anneal.temperature(0.45) == pytest.approx(30 - 29 * 0.45)
    assert anneal.temperature(3.0) == 1.0


def test_static_model_gets_no_annealing():
    task = ClassificationTask("resnet18", SMALL)
    assert not any(isinstance(c, TemperatureAnnealing) for c in task.configure_callbacks())
    dynet = ClassificationTask("resnet18", {**DYNAMIC, "mode": "dynet"})
    assert not any(isinstance(c, TemperatureAnnealing) for c in dynet.configure_callbacks())
    dyconv = ClassificationTask("resnet18", DYNAMIC)
    assert any(isinstance(c, TemperatureAnnealing) for c in dyconv.configure_callbacks())


# ---------------------------------------------------------------------- optimiser and schedule
def test_no_weight_decay_on_norms_and_biases():
    model = build_model("resnet18", {**DYNAMIC, "mode": "dynet"}, num_classes=10, small_input=True)
    decay, no_decay = param_groups(model, 5e-5)
    assert decay["weight_decay"] == 5e-5 and no_decay["weight_decay"] == 0.0
    ids = lambda group: {id(p) for p in group["params"]}  # noqa: E731
    assert ids(decay).isdisjoint(ids(no_decay))
    assert ids(decay) | ids(no_decay) == {id(p) for p in model.parameters()}
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if isinstance(module, nn.BatchNorm2d) or name == "bias":
                assert id(param) in ids(no_decay), (type(module).__name__, name)
            elif isinstance(module, (nn.Conv2d, nn.Linear, DynamicConv2d)) and name == "weight":
                assert id(param) in ids(decay), (type(module).__name__, name)
    predictor = next(m for m in model.modules() if isinstance(m, CoefficientPredictor))
    assert id(predictor.output_layer.weight) in ids(decay)
    assert id(predictor.output_layer.bias) in ids(no_decay)


def test_configure_optimizers_sgd_and_adamw(tmp_path):
    task = ClassificationTask("resnet18", SMALL, lr=0.2, nesterov=True, warmup_epochs=0)
    trainer(tmp_path, max_steps=1).fit(task, digits(16))
    config = task.configure_optimizers()
    optimizer = config["optimizer"]
    assert isinstance(optimizer, torch.optim.SGD)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [5e-5, 0.0]
    assert all(g["momentum"] == 0.9 and g["nesterov"] for g in optimizer.param_groups)
    assert config["lr_scheduler"]["interval"] == "step"
    adamw = ClassificationTask("resnet18", SMALL, optimizer="adamw", lr=1e-3, weight_decay=0.05)
    trainer(tmp_path, max_steps=1).fit(adamw, digits(16))
    optimizer = adamw.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]


def test_warmup_then_cosine_and_poly():
    cosine = WarmupSchedule(total_steps=10, warmup_steps=4, decay="cosine")
    assert [cosine(s) for s in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert cosine(4) == 1.0 and cosine(9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 6)))
    assert all(cosine(s) > cosine(s + 1) for s in range(4, 9))
    poly = WarmupSchedule(total_steps=10, decay="poly", power=0.9)
    assert poly(0) == 1.0 and poly(5) == pytest.approx(0.5**0.9)
    assert WarmupSchedule(10, 2, "constant")(7) == 1.0


def test_schedule_drives_the_logged_learning_rate(tmp_path):
    task = ClassificationTask("resnet18", SMALL, lr=0.1, warmup_epochs=0.2)  # 2 of 10 batches an epoch
    logger = CSVLogger(tmp_path, name="lr")
    trainer(tmp_path, max_steps=6, logger=logger, limit_train_batches=10).fit(task, digits(16))
    lrs = [float(r["lr"]) for r in read_csv(f"{logger.log_dir}/metrics.csv") if r.get("lr")]
    expected = [0.1 * WarmupSchedule(6, 2, "cosine")(s) for s in range(6)]
    assert lrs == pytest.approx(expected)


def test_unbounded_training_needs_a_length(tmp_path):
    task = ClassificationTask("resnet18", SMALL)
    with pytest.raises(ValueError, match="finite training length"):
        trainer(tmp_path, max_steps=-1, max_epochs=-1).fit(task, digits(16))


# ---------------------------------------------------------------------- data that does not fit
def test_task_and_data_must_agree(tmp_path):
    with pytest.raises(ValueError, match=r"num_classes=100.*num_classes=10"):
        trainer(tmp_path).fit(ClassificationTask("resnet18", SMALL, num_classes=100), digits())
    with pytest.raises(ValueError, match=r"in_channels=3.*in_channels=1"):
        trainer(tmp_path).fit(ClassificationTask("resnet18", SMALL, in_channels=3), digits())
    with pytest.raises(ValueError, match=r"image_size=224.*MACs"):
        trainer(tmp_path).fit(ClassificationTask("resnet18", SMALL, image_size=224), digits())


def test_small_input_stem_refuses_large_images(tmp_path):
    """A 224 px data set with the default small_input=True would train a stride-1 stem silently."""
    task = ClassificationTask("resnet18", SMALL, image_size=224)
    data = types.SimpleNamespace(num_classes=10, in_channels=1, image_size=224)
    task._trainer = types.SimpleNamespace(datamodule=data)
    with pytest.raises(ValueError, match=r"small_input=True.*at most 64.*small_input=False"):
        task.setup("fit")


# ---------------------------------------------------------------------- NaN
class PoisonBatch(L.Callback):
    """Fills the images of batch ``at`` with NaN: the loss of that step is NaN."""

    def __init__(self, at: int):
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at:
            batch[0].fill_(float("nan"))


def test_nan_loss_stops_with_the_last_good_checkpoint_intact(tmp_path):
    task = ClassificationTask("resnet18", SMALL)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=1)
    with pytest.raises(NonFiniteError, match=r"loss is nan at step 3 .*last good step.*last\.ckpt"):
        trainer(tmp_path, max_steps=10, callbacks=[PoisonBatch(3), checkpoint]).fit(task, digits(16))
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())
    # No step was taken with the NaN loss: the model in memory is the one in last.ckpt.
    for name, value in task.named_parameters():
        assert torch.equal(value, saved["state_dict"][name]), name
    loaded = ClassificationTask.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert loaded.hparams.model == "resnet18"


class PoisonWeights(L.Callback):
    """After step ``at``, a weight becomes NaN (as a huge update would make it)."""

    def __init__(self, at: int):
        self.at = at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at:
            with torch.no_grad():
                pl_module.model.fc.weight[0, 0] = float("nan")


@pytest.mark.parametrize("weights_only", [False, True])
def test_nan_weights_are_never_saved(tmp_path, weights_only):
    task = ClassificationTask("resnet18", SMALL)
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=1, save_weights_only=weights_only
    )
    with pytest.raises(NonFiniteError, match=r"refusing to save a checkpoint at step 2.*model\.fc\.weight"):
        trainer(tmp_path, max_steps=10, callbacks=[PoisonWeights(2), checkpoint]).fit(task, digits(16))
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 1
    assert torch.isfinite(saved["state_dict"]["model.fc.weight"]).all()


# ---------------------------------------------------------------------- segmentation
def test_segmentation_fit_and_checkpoint(tmp_path):
    L.seed_everything(0)
    task = SegmentationTask("resnet18", SMALL, warmup_epochs=0)
    data = DigitCanvasDataModule(num_train=64, num_val=16, batch_size=8)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    logger = CSVLogger(tmp_path, name="seg")
    trainer(tmp_path, max_steps=4, logger=logger, callbacks=[checkpoint], val_check_interval=4).fit(task, data)
    rows = [r for r in read_csv(f"{logger.log_dir}/metrics.csv") if r.get("val_miou")]
    assert rows and 0 <= float(rows[-1]["val_miou"]) <= 1 and float(rows[-1]["val_pixel_acc"]) > 0
    hparams = read_yaml(f"{logger.log_dir}/hparams.yaml")
    assert hparams["macs"] == count(task.model, (1, 64, 64)).macs
    loaded = SegmentationTask.load_from_checkpoint(checkpoint.last_model_path)
    task.eval(), loaded.eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(task(x), loaded(x))
        assert task(x).shape == (2, 11, 64, 64)
    with pytest.raises(CheckpointMismatchError, match=r"output_stride: 8 vs 16"):
        SegmentationTask.load_from_checkpoint(checkpoint.last_model_path, output_stride=16)


def test_pixel_loss_ignores_and_never_divides_by_zero():
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    target[0, 0] = 255
    expected = nn.functional.cross_entropy(logits, target, ignore_index=255)
    torch.testing.assert_close(pixel_cross_entropy(logits, target), expected)
    all_ignored = torch.full((2, 4, 4), 255)
    assert pixel_cross_entropy(logits, all_ignored).item() == 0.0  # F.cross_entropy gives NaN here


def test_segmentation_rejects_an_ignore_index_that_is_a_class():
    with pytest.raises(ValueError, match="ignore_index 5 is a class index"):
        SegmentationTask("resnet18", SMALL, num_classes=11, ignore_index=5)


def test_arguments_given_by_lightning_cli_are_stored_normalised():
    # LightningCLI makes Lightning save the arguments as given (spec=None here), through this
    # context; the tasks store the resolved spec all the same, so checkpoints rebuild exactly.
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters_context

    given = {"model": "dy_resnet18", "spec": None, "betas": (0.9, 0.99), "_class_path": "x"}
    with _given_hyperparameters_context(given, "lightning.pytorch.cli.instantiate_module"):
        task = ClassificationTask("dy_resnet18", None, betas=(0.9, 0.99), temperature_epochs=0)
    assert task.hparams.spec == default_spec("dy_resnet18").to_dict() and task.hparams.spec["num_bases"] == 6
    assert task.hparams.betas == [0.9, 0.99]
    assert task.hparams["_instantiator"] == "lightning.pytorch.cli.instantiate_module"


def test_checkpoint_written_before_a_spec_field_existed_still_loads(tmp_path) -> None:
    """A spec field added later (missing from an older checkpoint) takes its default, not a mismatch."""
    from dynsweep.tasks.base import CHECKPOINT_KEY

    task = ClassificationTask("resnet18", {"width_mult": 0.25}, num_classes=10)
    checkpoint = {CHECKPOINT_KEY: {"architecture": task.architecture}}
    old_spec = dict(checkpoint[CHECKPOINT_KEY]["architecture"]["spec"])
    old_spec.pop("temperature")  # as if the field had not existed yet
    checkpoint[CHECKPOINT_KEY]["architecture"] = {**task.architecture, "spec": old_spec}
    task.on_load_checkpoint(checkpoint)  # no CheckpointMismatchError


def test_dynamic_biases_get_no_weight_decay() -> None:
    """A dynamic layer's bias is [out, num_bases], two-dimensional, and still a bias."""
    layer = DynamicConv2d(4, 6, 3, bias=True)
    decay, no_decay = param_groups(nn.Sequential(layer), 5e-5)
    assert any(p is layer.bias for p in no_decay["params"])
    assert any(p is layer.weight for p in decay["params"])
