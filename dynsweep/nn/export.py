"""ONNX export of a model's inference form, and the optional packages it needs.

:func:`to_onnx` folds BatchNorm (:func:`~dynsweep.nn.fold_batchnorm`) and exports with
``torch.onnx.export(dynamo=True)``. At a static batch each dynamic layer becomes one MatMul that
fuses its kernels (batched over output channels) and one Conv with the fused kernel, the paper's
inference form; with a symbolic batch, the feature form (one Conv over all bases, Eq. 2).

The exporter (``onnx``, ``onnxscript``) and ONNX Runtime come with the ``onnx`` extra
(``pip install 'dynsweep[onnx]'``); :func:`import_extra` turns a missing one into one line that
names the extra.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from dynsweep.errors import DynsweepError
from dynsweep.nn.fold import fold_batchnorm

ONNX_EXTRA = "onnx"


class MissingExtraError(DynsweepError, ImportError):
    """An optional package of a dynsweep extra is not installed."""


def import_extra(module: str, extra: str = ONNX_EXTRA) -> ModuleType:
    """``import module``, or a :class:`MissingExtraError` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{module} is not installed; it comes with the {extra} extra: pip install 'dynsweep[{extra}]'"
        ) from None


def to_onnx(model: nn.Module, example: torch.Tensor, path: str | Path, dynamic_batch: bool = False) -> None:
    """Write the inference graph of ``model`` (BatchNorm folded, eval mode) traced on ``example``.

    ``dynamic_batch`` makes the batch dimension symbolic (``example`` needs a batch of 2 or more:
    ``torch.export`` specialises a dimension of size 1). The file holds its weights.
    """
    import_extra("onnx")
    import_extra("onnxscript")  # the dynamo-based exporter translates through it
    from torch.export import Dim

    folded = fold_batchnorm(model).eval()
    program = torch.onnx.export(
        folded,
        (example,),
        dynamo=True,
        input_names=["input"],
        output_names=["output"],
        dynamic_shapes=({0: Dim("batch", min=1, max=1024)},) if dynamic_batch else None,
        verbose=False,
    )
    assert program is not None  # torch types it optional for dynamo=False only
    program.save(str(path), external_data=False)
