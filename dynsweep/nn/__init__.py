"""Dynamic convolution operators: the layer, its Linear form and its coefficient predictor."""

from dynsweep.nn.dynamic_conv import STRATEGIES, DynamicConv2d, choose_strategy
from dynsweep.nn.dynamic_linear import DynamicLinear
from dynsweep.nn.fold import fold_batchnorm, fold_batchnorm_into
from dynsweep.nn.predictor import COEFFICIENT_MODES, CoefficientPredictor, check_reduction

__all__ = [
    "COEFFICIENT_MODES",
    "STRATEGIES",
    "CoefficientPredictor",
    "DynamicConv2d",
    "DynamicLinear",
    "check_reduction",
    "choose_strategy",
    "fold_batchnorm",
    "fold_batchnorm_into",
]
