"""DynamicConv2d: a convolution whose kernel is fused per sample from several fixed bases.

Implements DyNet (Zhang et al., "DyNet: Dynamic Convolution for Accelerating Convolutional
Neural Networks", arXiv 2004.10694), with the CondConv (Yang et al., NeurIPS 2019) and DY-CNN
(Chen et al., CVPR 2020) coefficient variants. Output channel ``t`` of sample ``b`` uses the
kernel ``sum_i eta[b, t, i] * weight[t, i]`` (Eq. 1 of the paper).

Every execution strategy computes the same function:

- ``"feature"``: the paper's training form (Eq. 2): one convolution with all
  ``out_channels * num_bases`` kernels, then the coefficient-weighted sum of the base outputs.
  Costs ``num_bases`` times the convolution, but no per-sample kernels are stored.
- ``"grouped"``: kernels fused per sample, then one grouped convolution with the batch folded
  into the groups. At batch 1 this is an ordinary convolution with the fused kernel, the
  paper's inference form.
- ``"matmul"``: kernels fused per sample, then a batched matrix product with the unfolded input
  (a plain reshape for pointwise convolutions).
- ``"auto"`` (default) picks one from the shape, batch size, mode and device; see
  :func:`choose_strategy`. At batch 1 without autograd (``torch.inference_mode``/``no_grad``,
  no autocast, eager) it takes a short path: one product fuses the kernel, then one
  convolution, or one matrix product for a 1x1 layer, in the input's memory format.

``Module.to(memory_format=torch.channels_last)`` works on models holding dynamic layers: each
base takes the channels-last layout a static kernel would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynsweep.nn.predictor import CoefficientPredictor, autocast_disabled, check_mode, plain_inference

STRATEGIES = ("auto", "feature", "grouped", "matmul")
# Kernels with at least this many weights per output channel are fused by batched matmul.
MATMUL_FUSION_MIN_SIZE = 128
# Output maps with fewer pixels than this train faster with "matmul" than with "grouped".
SMALL_MAP_PIXELS = 28 * 28

IntOrPair = int | tuple[int, int]


def _pair(value: IntOrPair, name: str, minimum: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= minimum for v in pair):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return pair


def _padding(
    padding: IntOrPair | str, kernel_size: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int, int, int] | None]:
    """Resolve padding to ``(symmetric (pad_h, pad_w), explicit F.pad tuple or None)``.

    ``"same"`` pads like ``nn.Conv2d`` (the extra pixel of an even kernel goes right/bottom);
    when that is asymmetric it becomes an explicit ``F.pad`` so every strategy sees one input.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), None
        if padding != "same":
            raise ValueError(f"padding must be an int, a pair of ints, 'same' or 'valid', got {padding!r}")
        if stride != (1, 1):
            raise ValueError(f"padding='same' requires stride=1, got stride={stride}")
        totals = [d * (k - 1) for d, k in zip(dilation, kernel_size)]
        (top, left) = (t // 2 for t in totals)
        (bottom, right) = (t - t // 2 for t in totals)
        if (top, left) == (bottom, right):
            return (top, left), None
        return (0, 0), (left, right, top, bottom)
    return _pair(padding, "padding", 0), None


class DynamicConv2d(nn.Module):
    """A ``Conv2d`` whose kernel is a per-sample, predicted combination of ``num_bases`` bases.

    The first eight arguments mean what they mean for ``nn.Conv2d``, except that ``bias``
    defaults to False (a BatchNorm follows nearly every dynamic layer). ``mode`` picks the
    coefficients: ``"dynet"`` one sigmoid per (output channel, base), ``"condconv"`` one sigmoid
    per base, ``"dyconv"`` one softmax(z / temperature) per base. ``reduction`` sets the
    predictor's hidden width to ``in_channels // reduction`` (``None``: a single linear layer).
    With ``shared_predictor=True`` the layer has no predictor of its own and ``forward`` needs
    coefficients from a block-level :class:`CoefficientPredictor` (the paper's one CPM per block);
    ``coefficient_slot`` is then the index of this layer's tensor in that predictor's output: a
    block hands each layer ``coefficients[layer.coefficient_slot]`` (``dynsweep.models`` sets it
    when it builds the layer).

    Bases are initialised like ``nn.Conv2d``'s kernel, scaled so that the fused kernel at the
    predictor's average coefficient has the variance of a static convolution's kernel.
    """

    output_bias: nn.Parameter | None  # registered in __init__ (None until fold_batchnorm sets it)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrPair,
        stride: IntOrPair = 1,
        padding: IntOrPair | str = 0,
        dilation: IntOrPair = 1,
        groups: int = 1,
        bias: bool = False,
        num_bases: int = 4,
        mode: str = "dynet",
        reduction: int | None = 4,
        temperature: float = 30.0,
        *,
        shared_predictor: bool = False,
        coefficient_slot: int | None = None,
        strategy: str = "auto",
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        if isinstance(num_bases, bool) or not isinstance(num_bases, int) or num_bases < 1:
            raise ValueError(f"num_bases must be an integer >= 1, got {num_bases!r}")
        check_mode(mode)
        if coefficient_slot is not None and (
            not shared_predictor
            or isinstance(coefficient_slot, bool)
            or not isinstance(coefficient_slot, int)
            or coefficient_slot < 0
        ):
            raise ValueError(
                "coefficient_slot must be None or, with shared_predictor=True, an integer >= 0, "
                f"got {coefficient_slot!r}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.dilation = _pair(dilation, "dilation", 1)
        self.padding, self._explicit_pad = _padding(padding, self.kernel_size, self.stride, self.dilation)
        self.padding_arg = padding
        self.groups = groups
        self.num_bases = num_bases
        self.mode = mode
        self.reduction = reduction
        self.coefficient_slot = coefficient_slot
        self.strategy = strategy

        self.weight = nn.Parameter(torch.empty(out_channels, num_bases, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels, num_bases)) if bias else None
        # A per-channel bias independent of the coefficients; only fold_batchnorm sets it.
        self.register_parameter("output_bias", None)
        self.predictor = (
            None
            if shared_predictor
            else CoefficientPredictor(in_channels, [(out_channels, num_bases)], mode, reduction, temperature)
        )
        self.reset_parameters()

    @property
    def strategy(self) -> str:
        """Execution strategy: ``"auto"``, ``"feature"``, ``"grouped"`` or ``"matmul"``."""
        return self._strategy

    @strategy.setter
    def strategy(self, value: str) -> None:
        if value not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {value!r}")
        self._strategy = value

    @property
    def initial_coefficient(self) -> float:
        """Average coefficient at initialisation: 1/2 for sigmoid modes, 1/K for softmax."""
        return 1.0 / self.num_bases if self.mode == "dyconv" else 0.5

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s default initialisation, per base (see :meth:`init_bases_`)."""
        self.init_bases_(lambda kernel: nn.init.kaiming_uniform_(kernel, a=math.sqrt(5)))
        if self.bias is not None:
            fan_in = (self.in_channels // self.groups) * math.prod(self.kernel_size)
            bound = self._base_scale / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def _base_scale(self) -> float:
        # K bases summed with coefficients of about a: scale each by 1 / sqrt(K a^2).
        return 1.0 / math.sqrt(self.num_bases * self.initial_coefficient**2)

    @torch.no_grad()
    def init_bases_(self, init: Callable[[Tensor], object]) -> None:
        """Initialise every base with a static-kernel initialiser, e.g. ``nn.init.kaiming_normal_``.

        Each base gets ``init`` applied to an ``[out, in // groups, kH, kW]`` kernel (so fans are
        those of the static convolution), scaled so that the fused kernel at the predictor's
        average coefficient has the variance ``init`` gives a static kernel.
        """
        for base in range(self.num_bases):
            kernel = torch.empty_like(self.weight[:, base])
            init(kernel)
            self.weight[:, base] = kernel * self._base_scale

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, noise: float = 0.01, **dynamic_kwargs) -> DynamicConv2d:
        """Build a dynamic layer whose bases start from a static convolution's weights.

        At initialisation the converted layer computes exactly ``conv(x)`` (to rounding): its
        predictor's output layer is zeroed, so every coefficient equals the mode's initial value
        ``a`` (1/2 for sigmoid, 1/K for softmax), and base ``i`` is ``w / (K * a) + n_i``, where
        the noise ``n_i`` (std ``noise * std(w)``) sums to zero over the bases. The noise breaks
        the symmetry between bases so they can specialise during training.
        """
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
        if conv.padding_mode != "zeros":
            raise ValueError(f"conv.padding_mode must be 'zeros', got {conv.padding_mode!r}")
        # torch types a convolution's sizes as tuple[int, ...]; an nn.Conv2d's are pairs.
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            cast(IntOrPair, conv.kernel_size),
            stride=cast(IntOrPair, conv.stride),
            padding=cast(IntOrPair | str, conv.padding),
            dilation=cast(IntOrPair, conv.dilation),
            groups=conv.groups,
            bias=conv.bias is not None,
            **dynamic_kwargs,
        ).to(device=conv.weight.device, dtype=conv.weight.dtype)
        layer.load_static(conv.weight, conv.bias, noise)
        return layer

    @torch.no_grad()
    def load_static(self, weight: Tensor, bias: Tensor | None = None, noise: float = 0.01) -> None:
        """Set the bases from a static kernel so the layer computes that convolution (see from_conv)."""
        expected = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        if tuple(weight.shape) != expected:
            raise ValueError(f"weight must have shape {expected}, got {tuple(weight.shape)}")
        if self.predictor is not None:
            nn.init.zeros_(self.predictor.output_layer.weight)
            nn.init.zeros_(self.predictor.output_layer.bias)
        share = 1.0 / (self.num_bases * self.initial_coefficient)
        perturbation = torch.randn_like(self.weight) * (noise * weight.std().clamp_min(1e-12))
        perturbation -= perturbation.mean(dim=1, keepdim=True)
        self.weight.copy_(weight.unsqueeze(1) * share + perturbation)
        if self.bias is not None:
            if bias is None:
                self.bias.zero_()
            else:
                self.bias.copy_(bias.unsqueeze(1).expand_as(self.bias) * share)

    def coefficients(self, x: Tensor) -> Tensor:
        """The layer's own coefficients for input ``x``: ``[B, out_channels, num_bases]``."""
        if self.predictor is None:
            raise ValueError("this layer has shared_predictor=True: pass coefficients to forward()")
        return self.predictor(x)[0]

    def fused_weight(self, coefficients: Tensor) -> Tensor:
        """Per-sample kernels (Eq. 1): ``[B, out_channels, in_channels // groups, kH, kW]``.

        Fusion runs in at least float32, also under autocast.
        """
        self._check_coefficients(coefficients)
        return self._fuse(coefficients).unflatten(2, self.weight.shape[2:])

    def fused_bias(self, coefficients: Tensor) -> Tensor | None:
        """Per-sample bias ``[B, out_channels]``, fused with the kernels' coefficients."""
        if self.bias is None:
            return None
        with autocast_disabled(coefficients.device.type):
            dtype = torch.promote_types(self.bias.dtype, torch.float32)
            return torch.einsum("bok,ok->bo", coefficients.to(dtype), self.bias.to(dtype))

    def _fuse(self, coefficients: Tensor) -> Tensor:
        """Fused kernels flattened to ``[B, out_channels, in_channels // groups * kH * kW]``."""
        with autocast_disabled(coefficients.device.type):
            dtype = torch.promote_types(self.weight.dtype, torch.float32)
            bases = self.weight.to(dtype).flatten(2)
            coefficients = coefficients.to(dtype)
            if torch.compiler.is_exporting():
                return _fuse_by_matmul(coefficients, bases)
            if bases.shape[-1] >= MATMUL_FUSION_MIN_SIZE:
                return torch.einsum("bok,okc->boc", coefficients, bases)
            # Few weights per (channel, base): one broadcast product beats many tiny matmuls.
            return (coefficients.unsqueeze(-1) * bases).sum(2)

    def _check_coefficients(self, coefficients: Tensor) -> None:
        expected = (self.out_channels, self.num_bases)
        if coefficients.dim() != 3 or tuple(coefficients.shape[1:]) != expected:
            raise ValueError(
                f"coefficients must have shape [batch, {expected[0]}, {expected[1]}] "
                f"(batch, out_channels, num_bases), got {list(coefficients.shape)}"
            )

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> DynamicConv2d:
        # Module.to(memory_format=...) converts every 4-D and 5-D tensor, and the 5-D bases have
        # no channels-last layout: hand them over as the 4-D kernels [out * K, in, kH, kW], so
        # that each base takes the layout (channels-last: [kH, kW, in] innermost) of a static kernel.
        def convert(t: Tensor) -> Tensor:
            return fn(t.flatten(0, 1)).unflatten(0, t.shape[:2]) if t.dim() == 5 else fn(t)

        return super()._apply(convert, recurse)

    def forward(self, x: Tensor, coefficients: Tensor | None = None) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"input must be [batch, {self.in_channels}, H, W], got {list(x.shape)}")
        if (
            x.shape[0] == 1
            and self._strategy == "auto"
            and x.dtype == cast(Tensor, self._parameters["weight"]).dtype
            and x.dtype in (torch.float32, torch.float64)
            and plain_inference(x)
        ):
            return self._forward_single(x, coefficients)
        if coefficients is None:
            coefficients = self.coefficients(x)
        self._check_coefficients(coefficients)
        if coefficients.shape[0] != x.shape[0]:
            raise ValueError(f"coefficients batch {coefficients.shape[0]} does not match input batch {x.shape[0]}")
        if self._explicit_pad is not None:
            x = F.pad(x, self._explicit_pad)
        strategy = self.strategy if self.strategy != "auto" else choose_strategy(self, x)
        if strategy == "feature":
            return self._forward_feature(x, coefficients)
        if strategy == "grouped":
            return self._forward_grouped(x, coefficients)
        return self._forward_matmul(x, coefficients)

    def _forward_single(self, x: Tensor, coefficients: Tensor | None) -> Tensor:
        """Batch-1 inference without autograd: the ``"grouped"``/``"matmul"`` result in fewest ops.

        One ``bmm`` (or, for small kernels, one broadcast product) fuses the kernel, then one
        convolution (one matrix product for 1x1): at batch 1 the per-op dispatch, not the
        arithmetic, dominates small layers. Parameters come from ``_parameters`` directly,
        skipping ``nn.Module.__getattr__``.
        """
        out, bases = self.out_channels, self.num_bases
        if coefficients is None:
            coefficients = self.coefficients(x)
        if coefficients.shape != (1, out, bases):
            self._check_coefficients(coefficients)
            raise ValueError(f"coefficients batch {coefficients.shape[0]} does not match input batch 1")
        params = self._parameters
        if coefficients.dtype != x.dtype:
            coefficients = coefficients.to(x.dtype)
        coefficients = coefficients.reshape(out, 1, bases)
        weight = cast(Tensor, params["weight"])  # registered in __init__, never None
        channels_last = not weight.is_contiguous() and self.kernel_size != (1, 1)
        if channels_last:
            # Channels-last bases (Module.to): fuse in their [kH, kW, in] order, so the fused kernel
            # comes out channels-last, as the convolution of a channels-last input wants it.
            weight = weight.permute(0, 1, 3, 4, 2)
        weight = weight.reshape(out, bases, -1)
        if weight.shape[-1] >= MATMUL_FUSION_MIN_SIZE:
            weight = torch.bmm(coefficients, weight).view(out, -1)
        else:  # few weights per (channel, base): one broadcast product beats many tiny matmuls
            weight = (weight * coefficients.view(out, bases, 1)).sum(1)
        if channels_last:
            weight = weight.view(out, *self.kernel_size, -1).permute(0, 3, 1, 2)
        bias: Tensor | None = params.get("output_bias")
        base_bias = params.get("bias")
        if base_bias is not None:
            fused = torch.bmm(coefficients, base_bias.view(out, bases, 1)).view(out)
            bias = fused if bias is None else fused.add_(bias)
        if self._explicit_pad is not None:
            x = F.pad(x, self._explicit_pad)
        if self.kernel_size == (1, 1) and self.padding == (0, 0) and self.groups == 1:
            return _pointwise_single(x, weight, bias, self.stride)
        if weight.dim() == 2:
            weight = weight.view(out, self.in_channels // self.groups, *self.kernel_size)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def _conv(self, x: Tensor, weight: Tensor, groups: int, bias: Tensor | None = None) -> Tensor:
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, groups)

    def _sample_bias(self, coefficients: Tensor, dtype: torch.dtype) -> Tensor | None:
        """Everything added per (sample, output channel): fused bias plus ``output_bias``."""
        bias = self.fused_bias(coefficients)
        if self.output_bias is not None:
            bias = self.output_bias[None] if bias is None else bias + self.output_bias
        return None if bias is None else bias.to(dtype).expand(coefficients.shape[0], -1)

    def _forward_feature(self, x: Tensor, coefficients: Tensor) -> Tensor:
        weight = self.weight.flatten(0, 1)  # channel o * K + i is base i of output channel o
        y = self._conv(x, weight, self.groups).unflatten(1, (self.out_channels, self.num_bases))
        dtype = torch.promote_types(y.dtype, coefficients.dtype)
        y = torch.einsum("bokhw,bok->bohw", y.to(dtype), coefficients.to(dtype))
        bias = self._sample_bias(coefficients, y.dtype)
        return y if bias is None else y + bias[:, :, None, None]

    def _forward_grouped(self, x: Tensor, coefficients: Tensor) -> Tensor:
        batch = x.shape[0]
        weight = self._fuse(coefficients).to(x.dtype).reshape(-1, *self.weight.shape[2:])
        bias = self._sample_bias(coefficients, x.dtype)
        bias = None if bias is None else bias.reshape(-1)
        if batch == 1:
            return self._conv(x, weight, self.groups, bias)
        y = self._conv(x.reshape(1, -1, *x.shape[2:]), weight, self.groups * batch, bias)
        return y.reshape(batch, self.out_channels, *y.shape[2:])

    def _forward_matmul(self, x: Tensor, coefficients: Tensor) -> Tensor:
        batch, groups = x.shape[0], self.groups
        weight = self._fuse(coefficients).to(x.dtype)
        weight = weight.reshape(batch * groups, self.out_channels // groups, -1)
        if self.kernel_size == (1, 1) and self.padding == (0, 0):
            x = x[:, :, :: self.stride[0], :: self.stride[1]]
            out_size: Sequence[int] = x.shape[2:]
            columns = x.reshape(batch * groups, self.in_channels // groups, -1)
        else:
            out_size = self.output_size(x.shape[2:])
            columns = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
            columns = columns.reshape(batch * groups, -1, columns.shape[-1])
        bias = self._sample_bias(coefficients, x.dtype)
        if bias is None:
            y = torch.bmm(weight, columns)
        else:
            y = torch.baddbmm(bias.reshape(batch * groups, -1, 1), weight, columns)
        return y.reshape(batch, self.out_channels, *out_size)

    def output_size(self, input_size: Sequence[int]) -> tuple[int, int]:
        """Spatial output size for a (padded) input of spatial size ``input_size``."""
        return cast(
            tuple[int, int],
            tuple(
                (size + 2 * p - d * (k - 1) - 1) // s + 1
                for size, p, d, k, s in zip(input_size, self.padding, self.dilation, self.kernel_size, self.stride)
            ),
        )

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, num_bases={self.num_bases}, mode={self.mode!r}"
        )
        if self.padding_arg not in (0, (0, 0)):
            text += f", padding={self.padding_arg!r}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.predictor is None:
            text += ", shared_predictor=True"
        if self.coefficient_slot is not None:
            text += f", coefficient_slot={self.coefficient_slot}"
        if self.strategy != "auto":
            text += f", strategy={self.strategy!r}"
        return text


def _pointwise_single(x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int]) -> Tensor:
    """A 1x1 convolution of one sample ``[1, C, H, W]`` as one matrix product, in ``x``'s layout.

    Contiguous input: ``weight @ x[C, HW]``; channels-last input: ``x[HW, C] @ weight^T``, whose
    result is already the channels-last output. Neither copies the input (unless strided).
    """
    channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    if stride != (1, 1):
        x = x[:, :, :: stride[0], :: stride[1]]
    _, channels, height, width = x.shape
    out = weight.shape[0]
    if channels_last:
        rows = x.permute(0, 2, 3, 1).reshape(height * width, channels)
        y = torch.mm(rows, weight.t()) if bias is None else torch.addmm(bias, rows, weight.t())
        return y.view(1, height, width, out).permute(0, 3, 1, 2)
    columns = x.reshape(channels, height * width)
    y = torch.mm(weight, columns) if bias is None else torch.addmm(bias[:, None], weight, columns)
    return y.view(1, out, height, width)


def _fuse_by_matmul(coefficients: Tensor, bases: Tensor) -> Tensor:
    """Fused kernels ``[B, O, C]`` as one MatMul batched over output channels, ``[O, B, K] @ [O, K, C]``.

    The form exported graphs carry: ONNX Runtime runs it at the speed of one read of the bases (its
    Einsum transposes them on every call), and ``dynsweep.latency.onnx_layout`` finds it by this shape.
    """
    if coefficients.shape[0] == 1:  # a static batch of 1: reshapes, no transposes in the graph
        out, num_bases = coefficients.shape[1:]
        return torch.matmul(coefficients.reshape(out, 1, num_bases), bases).reshape(1, out, -1)
    return torch.matmul(coefficients.transpose(0, 1), bases).transpose(0, 1)


def choose_strategy(layer: DynamicConv2d, x: Tensor) -> str:
    """Pick the fastest exact strategy for ``layer`` on input ``x`` (measured by ``make bench``).

    Inference always fuses kernels. Under export with a symbolic batch, grouped convolution
    cannot be expressed (its group count would depend on the batch), so feature fusion is used.
    """
    batch = x.shape[0]
    if not isinstance(batch, int):
        return "feature"
    if torch.compiler.is_exporting():
        # Exported graphs get one Conv with the fused kernel (the paper's inference form): the
        # matmul form breaks under onnxscript's reshape-MatMul-reshape rewrite.
        return "grouped"
    pointwise = layer.kernel_size == (1, 1) and layer.padding == (0, 0)
    if pointwise and layer.groups == 1:
        # A plain (batched) matrix product beats a 1x1 NCHW convolution on CPU, at any batch.
        return "matmul"
    if batch == 1 or layer.groups > 1:
        # A single fused kernel (batch 1), or a grouped/depthwise convolution that stays one.
        return "grouped"
    out_h, out_w = layer.output_size(x.shape[2:])
    if x.is_cuda and layer.training and torch.is_grad_enabled():
        # Training on CUDA: cuDNN's batch-as-groups convolution only pays on
        # large maps; elsewhere the paper's feature fusion, one dense convolution, is fastest.
        return "grouped" if out_h * out_w >= 56 * 56 else "feature"
    # Batch-as-groups convolution is efficient on large maps; on small, wide maps the per-sample
    # kernels outweigh the activations and the batched matrix product wins.
    return "grouped" if out_h * out_w >= SMALL_MAP_PIXELS else "matmul"
