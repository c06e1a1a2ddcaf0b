"""One-shot CUDA check of the models: training under bf16, device-vs-CPU outputs, the batch-1 fast
path, BatchNorm folding, batch-1 latency through ``dynsweep.latency`` (eager and CUDA graphs, CUDA
events; ``measure_for_trial``'s report and cache on the device) and one segmentation step.

Run on a GPU machine: ``python -m benchmarks.gpu_models_check``. It replaces the ad-hoc model
checks recorded in docs/gpu.md (whose scripts were not kept), so those observations can be re-run.
Dry run on CPU: ``python -m benchmarks.gpu_models_check --device cpu --quick`` (small batches and
images; the CUDA-graph timings are skipped; the tests run its latency section this way). Every section runs even when an earlier one fails;
failed checks are listed at the end and the exit status is 1. Result lines start with a section
tag (``[models]``, ``[single]``, ``[fold]``, ``[latency]``, ``[seg]``) for grepping.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from benchmarks.model_latency import PAIRS, LatencyPair
from benchmarks.timing import interleaved_medians
from dynsweep.latency import LatencySettings, Spread, measure_for_trial, runner, time_models
from dynsweep.models import build_model, list_models
from dynsweep.models.segmentation import build_segmentation_model
from dynsweep.nn import COEFFICIENT_MODES, DynamicConv2d, fold_batchnorm

# Device float32 (cuDNN may use TF32) against CPU float32: relative max difference allowed.
CPU_MATCH_TOLERANCE = 1e-2
FLOAT64_TOLERANCE = 1e-10


@dataclass
class Settings:
    device: torch.device
    batch: int  # section 1: training and device-vs-CPU batch
    size: int  # image side for sections 1, 3 and 4
    seg_size: tuple[int, int]  # section 5: (height, width)
    train_repeats: int
    latency_repeats: int


@dataclass
class Report:
    """Collects failed checks so that every section runs before the script exits."""

    failures: list[str] = field(default_factory=list)
    start: float = field(default_factory=time.perf_counter)

    def check(self, ok: bool, message: str) -> bool:
        if not ok:
            self.failures.append(message)
            print(f"FAIL {message}", flush=True)
        return ok

    def section(self, title: str) -> None:
        elapsed = time.perf_counter() - self.start
        print(f"\n=== {time.strftime('%H:%M:%S')} (+{elapsed:.1f} s) {title}", flush=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synced(fn: Callable[[], object], device: torch.device) -> Callable[[], None]:
    """``fn`` followed by a device synchronize, so wall time covers the queued kernels."""

    def run() -> None:
        fn()
        synchronize(device)

    return run


def relative_diff(actual: Tensor, expected: Tensor) -> float:
    """max |actual - expected| / max |expected|, in float64 on the CPU."""
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


def autocast(device: torch.device, enabled: bool = True):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


# --- 1. every registered model: bf16 training step, device vs CPU -----------------------------


def check_models(settings: Settings, report: Report) -> None:
    device, batch, size = settings.device, settings.batch, settings.size
    report.section(f"[models] fwd+bwd, batch {batch}, {size}x{size}, bf16 autocast on {device}; eval vs CPU float32")
    print(
        f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32} "
        f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32} "
        f"cudnn.benchmark={torch.backends.cudnn.benchmark} (device float32 may use TF32)"
    )
    for name in list_models():
        try:
            _check_model(name, settings, report)
        except Exception:  # one model's bug must not hide the others
            report.check(False, f"[models] {name}: exception")
            traceback.print_exc()
            sys.stdout.flush()


def _check_model(name: str, settings: Settings, report: Report) -> None:
    device, batch, size = settings.device, settings.batch, settings.size
    torch.manual_seed(0)
    model = build_model(name, num_classes=1000).to(device).train()
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(batch, 3, size, size, device=device)
    target = torch.randint(0, 1000, (batch,), device=device)
    losses: list[Tensor] = []

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast(device):
            loss = F.cross_entropy(model(x).float(), target)
        loss.backward()
        losses.append(loss.detach())

    ms = interleaved_medians({"step": synced(step, device)}, settings.train_repeats, warmup=2)["step"] * 1e3
    loss = losses[-1].item()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    missing = sum(g is None for g in grads)
    finite = all(torch.isfinite(g).all().item() for g in grads if g is not None)
    report.check(bool(torch.isfinite(losses[-1])), f"[models] {name}: loss {loss} not finite")
    report.check(finite, f"[models] {name}: non-finite gradients")
    report.check(missing == 0, f"[models] {name}: {missing} parameters got no gradient")

    # The same weights in eval mode, float32, on the device and on the CPU.
    model.eval()
    with torch.inference_mode():
        on_device = model(x).float().cpu()
    model.cpu()  # outside inference_mode: the moved parameters stay ordinary tensors
    with torch.inference_mode():
        on_cpu = model(x.cpu())
    rel = relative_diff(on_device, on_cpu)
    report.check(rel < CPU_MATCH_TOLERANCE, f"[models] {name}: device vs CPU rel diff {rel:.2e}")
    print(
        f"[models] {name:22s} params={params / 1e6:7.2f}M fwd_bwd_ms={ms:8.2f} loss={loss:.3f} "
        f"grads_finite={finite} params_without_grad={missing} eval_rel_vs_cpu={rel:.2e}",
        flush=True,
    )


# --- 2. the batch-1 inference fast path ----------------------------------------------------------


@dataclass(frozen=True)
class SingleCase:
    name: str
    in_channels: int
    out_channels: int
    kernel: int | tuple[int, int]
    stride: int = 1
    padding: int | str = 0
    groups: int = 1
    dilation: int = 1
    bias: bool = False
    output_bias: bool = False  # as fold_batchnorm leaves it


SINGLE_CASES = [
    SingleCase("1x1", 32, 64, 1),
    SingleCase("1x1_s2_bias", 32, 64, 1, stride=2, bias=True),
    SingleCase("3x3", 32, 64, 3, padding=1),
    SingleCase("3x3_s2", 32, 64, 3, stride=2, padding=1),
    SingleCase("3x3_bias_outbias", 32, 64, 3, padding=1, bias=True, output_bias=True),
    SingleCase("depthwise", 32, 32, 3, padding=1, groups=32),
    SingleCase("depthwise_s2", 32, 32, 3, stride=2, padding=1, groups=32),
    SingleCase("groups6", 24, 48, 3, padding=1, groups=6),
    SingleCase("group_width6", 48, 48, 3, padding=1, groups=8),
    SingleCase("dilated", 16, 32, 3, padding=2, dilation=2),
    SingleCase("same_even", 16, 32, (2, 4), padding="same"),
]


def _reference(layer: DynamicConv2d, x: Tensor, case: SingleCase) -> Tensor:
    """Per-sample F.conv2d with the fused kernel; coefficients from the general (autograd) path."""
    with torch.enable_grad():
        eta = layer.coefficients(x).detach()
    with torch.no_grad():
        kernel = layer.fused_weight(eta)[0]
        bias = layer.fused_bias(eta)
        bias = None if bias is None else bias[0]
        if layer.output_bias is not None:
            bias = layer.output_bias if bias is None else bias + layer.output_bias
        with warnings.catch_warnings():  # padding="same" with an even kernel: torch pads a copy
            warnings.simplefilter("ignore", UserWarning)
            return F.conv2d(x, kernel, bias, layer.stride, case.padding, layer.dilation, layer.groups)


def _count_fast_path(layer: DynamicConv2d) -> list[int]:
    """Wrap ``layer._forward_single`` (per instance) to count its calls: the check must run it."""
    calls = [0]
    original = layer._forward_single

    def counted(x: Tensor, coefficients: Tensor | None) -> Tensor:
        calls[0] += 1
        return original(x, coefficients)

    layer._forward_single = counted  # type: ignore[method-assign]
    return calls


def check_single(settings: Settings, report: Report) -> None:
    device = settings.device
    report.section(f"[single] batch-1 fast path vs grouped vs per-sample reference, float64 on {device}")
    for case in SINGLE_CASES:
        for mode in COEFFICIENT_MODES:
            try:
                _check_single_case(case, mode, device, report)
            except Exception:
                report.check(False, f"[single] {case.name} {mode}: exception")
                traceback.print_exc()
                sys.stdout.flush()


def _check_single_case(case: SingleCase, mode: str, device: torch.device, report: Report) -> None:
    torch.manual_seed(0)
    layer = DynamicConv2d(
        case.in_channels,
        case.out_channels,
        case.kernel,
        case.stride,
        case.padding,
        case.dilation,
        case.groups,
        case.bias,
        mode=mode,
        temperature=3.0,
    )
    if case.output_bias:
        layer.output_bias = nn.Parameter(torch.randn(case.out_channels))
    layer = layer.to(device, torch.float64).eval()
    x = torch.randn(1, case.in_channels, 17, 15, device=device, dtype=torch.float64)
    expected = _reference(layer, x, case)
    errors: dict[str, float] = {}
    with torch.inference_mode():
        fast_calls = _count_fast_path(layer)
        fast = layer(x)
        del layer._forward_single  # drop the counting wrapper before the layer is copied
        layer.strategy = "grouped"
        grouped = layer(x)
        layer.strategy = "auto"
        errors["fast_vs_ref"] = (fast - expected).abs().max().item()
        errors["fast_vs_grouped"] = (fast - grouped).abs().max().item()
        errors["grouped_vs_ref"] = (grouped - expected).abs().max().item()
    # The same layer in channels-last, with a channels-last and with a contiguous input.
    last = copy.deepcopy(layer).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        last_calls = _count_fast_path(last)
        y_last = last(x.contiguous(memory_format=torch.channels_last))
        y_mixed = last(x)
    report.check(fast_calls == [1] and last_calls == [2], f"[single] {case.name} {mode}: fast path not taken")
    errors["cl_vs_ref"] = (y_last - expected).abs().max().item()
    errors["cl_contig_input_vs_ref"] = (y_mixed - expected).abs().max().item()
    for key, error in errors.items():
        report.check(error < FLOAT64_TOLERANCE, f"[single] {case.name} {mode} {key} max|diff| {error:.2e}")
    report.check(fast.shape == expected.shape, f"[single] {case.name} {mode}: shape {tuple(fast.shape)}")
    print(
        f"[single] {case.name:17s} {mode:8s} cl_bases={not last.weight.is_contiguous()!s:5s} "
        + " ".join(f"{k}={v:.1e}" for k, v in errors.items()),
        flush=True,
    )


# --- 3. fold_batchnorm exactness -----------------------------------------------------------------


def check_fold(settings: Settings, report: Report) -> None:
    device, size = settings.device, settings.size
    report.section(f"[fold] fold_batchnorm vs unfolded, eval, float64 on {device}, {size}x{size}")
    for name in ("dy_resnet18", "dy_mobilenet_v2"):
        try:
            torch.manual_seed(0)
            model = build_model(name).to(device, torch.float64).eval()
            with torch.no_grad():  # non-trivial statistics, so folding is not the identity
                for bn in model.modules():
                    if isinstance(bn, nn.BatchNorm2d):
                        bn.running_mean.uniform_(-0.5, 0.5)
                        bn.running_var.uniform_(0.5, 2.0)
                        bn.weight.uniform_(0.5, 1.5)
                        bn.bias.uniform_(-0.5, 0.5)
            folded = fold_batchnorm(model)
            left = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
            report.check(left == 0, f"[fold] {name}: {left} BatchNorm layers left after folding")
            for batch in (1, 2):  # the batch-1 fast path and the general path
                x = torch.randn(batch, 3, size, size, device=device, dtype=torch.float64)
                with torch.inference_mode():
                    rel = relative_diff(folded(x), model(x))
                report.check(rel < FLOAT64_TOLERANCE, f"[fold] {name} batch {batch}: rel diff {rel:.2e}")
                print(f"[fold] {name:16s} batch={batch} bn_left={left} rel_diff={rel:.2e}", flush=True)
        except Exception:
            report.check(False, f"[fold] {name}: exception")
            traceback.print_exc()
            sys.stdout.flush()


# --- 4. batch-1 latency through dynsweep.latency: eager and CUDA graphs ---------------------------


def check_latency(settings: Settings, report: Report) -> None:
    device, size, repeats = settings.device, settings.size, settings.latency_repeats
    runtimes = ["eager", "cuda_graph"] if device.type == "cuda" else ["eager"]
    latency = LatencySettings(device=device.type, repeats=repeats, warmup=5)
    report.section(
        f"[latency] dynsweep.latency, batch 1, {size}x{size}, float32 (cuDNN's default TF32 on CUDA), "
        f"{' and '.join(runtimes)} on {device}, BN folded in both, interleaved, median of {repeats}"
    )
    if device.type != "cuda":
        print("[latency] CUDA graphs skipped: not a CUDA device")
    print(f"[latency] {'model':18s} {'runtime':10s} {'baseline':>10s} {'Dy':>20s} {'speed-up':>9s}")
    for pair in PAIRS:
        try:
            _latency_rows(pair, runtimes, latency, size, report)
        except Exception:
            report.check(False, f"[latency] {pair.preset}: exception")
            traceback.print_exc()
            sys.stdout.flush()
    try:
        _check_trial_record(latency, size, report)
    except Exception:
        report.check(False, "[latency] measure_for_trial: exception")
        traceback.print_exc()
        sys.stdout.flush()


def _latency_rows(pair: LatencyPair, runtimes: list[str], latency: LatencySettings, size: int, report: Report) -> None:
    torch.manual_seed(0)
    models = {
        "baseline": getattr(torchvision.models, pair.baseline)(weights=None),
        "dynamic": build_model(pair.preset),
    }
    notes = []
    if "cuda_graph" in runtimes:  # replay equals eager: the same kernels, captured
        x = torch.randn(1, 3, size, size, device=latency.device)
        with tempfile.TemporaryDirectory() as work:
            for key, model in models.items():
                replayed = runner(model, x, "cuda_graph", work, None)().clone()
                rel = relative_diff(replayed, runner(model, x, "eager", work, None)())
                notes.append(f"{key}_graph_vs_eager={rel:.1e}")
                # 1e-3 leaves room for another cuDNN algorithm under TF32.
                report.check(rel < 1e-3, f"[latency] {pair.preset} {key}: graph vs eager rel {rel:.2e}")
    timed = time_models(models, (3, size, size), latency, runtimes=runtimes)
    for runtime in runtimes:
        base, dyn = (Spread.of(timed[name, runtime], 1e3) for name in ("baseline", "dynamic"))
        spread = f"{dyn.median:8.3f}ms [{dyn.q1:.3f}-{dyn.q3:.3f}]"
        print(
            f"[latency] {pair.preset:18s} {runtime:10s} {base.median:8.3f}ms {spread:>20s} "
            f"{base.median / dyn.median:8.2f}x {' '.join(notes) if runtime == 'cuda_graph' else ''}",
            flush=True,
        )


def _check_trial_record(latency: LatencySettings, size: int, report: Report) -> None:
    """measure_for_trial on this device: a report with the settings, then the same from the cache."""
    torch.manual_seed(0)
    model, reference = build_model("dy_resnet18"), build_model("resnet18")
    settings = latency.replace(repeats=3, warmup=1)
    with tempfile.TemporaryDirectory() as cache_dir:
        lock = Path(cache_dir, "lock")
        first = measure_for_trial(model, reference, settings, cache_dir, (3, size, size), lock_path=lock)
        again = measure_for_trial(model, reference, settings, cache_dir, (3, size, size), lock_path=lock)
    got = first.report
    report.check(not first.cached and again.cached, f"[latency] trial cache: cached={first.cached}, {again.cached}")
    report.check(again.report == got, "[latency] trial cache returned another report")
    report.check(
        got.device == latency.device and got.runs == 3 and got.ratio is not None,
        f"[latency] trial report fields: device={got.device} runs={got.runs} ratio={got.ratio}",
    )
    print(
        f"[latency] measure_for_trial dy_resnet18/resnet18 on {got.device_name}: {got.median_ms:.3f} ms, "
        f"ratio {got.ratio:.2f} [{got.ratio_q1:.2f}-{got.ratio_q3:.2f}], runs {got.runs}, cached again={again.cached}",
        flush=True,
    )


# --- 5. segmentation training step ---------------------------------------------------------------


def check_segmentation(settings: Settings, report: Report) -> None:
    device, (height, width) = settings.device, settings.seg_size
    report.section(f"[seg] dy_resnet50 dilated FCN, training step, batch 2, {height}x{width}, bf16 on {device}")
    try:
        torch.manual_seed(0)
        model = build_segmentation_model("dy_resnet50", num_classes=19).to(device).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(2, 3, height, width, device=device)
        target = torch.randint(0, 19, (2, height, width), device=device)
        target[:, :8] = 255  # Cityscapes' ignore label
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for step in ("first", "second"):
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with autocast(device):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), target, ignore_index=255)
            loss.backward()
            optimizer.step()
            synchronize(device)
            ms = (time.perf_counter() - start) * 1e3
            finite = bool(torch.isfinite(loss))
            report.check(finite, f"[seg] {step} step: loss {loss.item()} not finite")
            report.check(tuple(logits.shape) == (2, 19, height, width), f"[seg] logits shape {tuple(logits.shape)}")
            peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}GiB" if device.type == "cuda" else "n/a"
            print(f"[seg] step={step} ms={ms:.1f} loss={loss.item():.4f} finite={finite} peak_mem={peak}", flush=True)
    except Exception:
        report.check(False, "[seg] exception")
        traceback.print_exc()
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="CPU dry run: batch 2 at 64x64, few repeats")
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=("models", "single", "fold", "latency", "seg"),
        default=["models", "single", "fold", "latency", "seg"],
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.quick:
        settings = Settings(device, batch=2, size=64, seg_size=(128, 256), train_repeats=2, latency_repeats=5)
    else:
        settings = Settings(device, batch=8, size=224, seg_size=(512, 1024), train_repeats=5, latency_repeats=50)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"torch {torch.__version__}, {name}, quick={args.quick}", flush=True)

    report = Report()
    sections = {
        "models": lambda: check_models(settings, report),
        "single": lambda: check_single(settings, report),
        "fold": lambda: check_fold(settings, report),
        "latency": lambda: check_latency(settings, report),
        "seg": lambda: check_segmentation(settings, report),
    }
    for key in args.sections:
        try:
            sections[key]()
        except Exception:
            report.check(False, f"section {key}: exception")
            traceback.print_exc()
    report.section(f"done: {len(report.failures)} failed check(s)")
    for failure in report.failures:
        print(f"FAILED {failure}")
    sys.stdout.flush()
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
