"""Dynamic backbones from a spec: six torchvision architectures, the DyNet paper's networks as
presets, and a dilated FCN for segmentation.

>>> from dynsweep.models import build_model, list_models
>>> model = build_model("resnet18")                     # torchvision's resnet18
>>> dy = build_model("dy_resnet18")                     # the paper's Dy-ResNet18
>>> sweep = build_model("mobilenet_v2", {"stages": "all", "num_bases": 4, "mode": "condconv"})
"""

# Importing the family modules and the presets registers their names.
from dynsweep.models import mobilenet_v2, mobilenet_v3, presets, resnet, shufflenet  # noqa: F401
from dynsweep.models.registry import (
    ModelEntry,
    build_model,
    default_spec,
    get_model_entry,
    list_models,
    register_model,
    register_preset,
    resolve_spec,
)
from dynsweep.models.segmentation import DilatedFCN, FCNHead, build_segmentation_model
from dynsweep.models.spec import PREDICTOR_SCOPES, ROLES, DynamicSpec
from dynsweep.models.weights import load_torchvision_weights

__all__ = [
    "PREDICTOR_SCOPES",
    "ROLES",
    "DilatedFCN",
    "DynamicSpec",
    "FCNHead",
    "ModelEntry",
    "build_model",
    "build_segmentation_model",
    "default_spec",
    "get_model_entry",
    "list_models",
    "load_torchvision_weights",
    "register_model",
    "register_preset",
    "resolve_spec",
]
