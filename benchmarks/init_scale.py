"""Dy against its Fix twin at initialisation, layer by layer, on real images (no training).

Per dynamic layer of a Dy preset and the same-named static convolution of its Fix twin: the std of
the kernel (Dy: the fused per-sample kernel of Eq. 1 under the block's predicted coefficients),
the std of the convolution's output (before its BatchNorm), the relative size of the kernel's
change after one plain SGD step on the same batch (the effective learning rate under BatchNorm's
scale invariance), the mean and the spread over samples of the coefficients, and the predictor's
hidden width. Prints one table per preset and the medians of the Dy / Fix ratios.

With ``--trained STUDY_DIR`` it also reads the trained Dy checkpoints of a claims study (no
training) and prints how far their coefficients spread over validation images, how many
predictors give the same coefficients for every image, and how many hidden units are dead.

    python -m benchmarks.init_scale [--width-resnet 0.125] [--width-mobile 0.25] [--seeds 3]
        [--trained runs/claims_glyphs]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from dynsweep.data import EmbeddedDigits, Glyphs, GlyphsDataModule
from dynsweep.nn import CoefficientPredictor, DynamicConv2d
from dynsweep.tasks.recipe import make_task

PAIRS = (("dy_resnet18", "fix_resnet18", "resnet18"), ("dy_mobilenet_v2", "fix_mobilenet_v2", "mobilenet_v2"))


def build(preset: str, arch: str, width: float, data: GlyphsDataModule, seed: int) -> nn.Module:
    """The preset at the given width, as a sweep's warm start builds it."""
    from dynsweep.models import default_spec

    torch.manual_seed(seed)
    spec = {**default_spec(preset).to_dict(), "width_mult": width}
    return make_task({"model": arch, "spec": spec, "small_input": True}, data).model


def layer_stats(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, lr: float) -> dict[str, dict]:
    """Per convolution (static or dynamic, by name): kernel std, output std, the relative change of
    the (fused) kernel after one SGD step, and for dynamic ones the coefficients' mean and spread."""
    model.train()
    found: dict[str, dict] = {}
    kernels: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            row = {"out_std": output.detach().std().item()}
            if isinstance(module, DynamicConv2d):
                eta = args[1] if len(args) > 1 and args[1] is not None else module.coefficients(args[0])
                eta = eta.detach()
                fused = module.fused_weight(eta)
                kernels[name] = fused.mean(0)
                row.update(
                    kernel_std=fused.std(dim=tuple(range(1, fused.dim()))).mean().item(),
                    eta_mean=eta.mean().item(),
                    eta_spread=eta.std(0).mean().item(),  # over samples: how dynamic the kernels are
                    sum_eta_sq=(eta**2).sum(-1).mean().item(),
                )
            else:
                kernels[name] = module.weight.detach().clone()
                row["kernel_std"] = module.weight.std().item()
            found[name] = row

        return record

    handles = [
        m.register_forward_hook(hook(n))
        for n, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, DynamicConv2d)) and not isinstance(m, CoefficientPredictor)
    ]
    loss = nn.functional.cross_entropy(model(images), labels)
    for h in handles:
        h.remove()
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= lr * p.grad
    after: dict[str, torch.Tensor] = {}
    handles = []
    for n, m in model.named_modules():
        if isinstance(m, DynamicConv2d):

            def keep(module, args, output, name=n):
                eta = args[1] if len(args) > 1 and args[1] is not None else module.coefficients(args[0])
                after[name] = module.fused_weight(eta.detach()).mean(0)

            handles.append(m.register_forward_hook(keep))
        elif isinstance(m, nn.Conv2d):
            after[n] = m.weight
    with torch.no_grad():
        model(images)
    for h in handles:
        h.remove()
    for name, row in found.items():
        row["step_ratio"] = ((after[name] - kernels[name]).norm() / kernels[name].norm()).item()
    return found


def predictor_widths(model: nn.Module) -> list[int]:
    """Hidden width of every predictor (its input width when it has a single linear layer)."""
    widths = []
    for m in model.modules():
        if isinstance(m, CoefficientPredictor):
            widths.append(m.fc[0].out_features if isinstance(m.fc, nn.Sequential) else m.in_channels)
    return widths


def compare(dy: str, fix: str, arch: str, width: float, seeds: int, lr: float) -> pd.DataFrame:
    data = GlyphsDataModule(batch_size=64, train_per_class=100, val_per_class=50)
    data.setup()
    images, labels = next(iter(data.train_dataloader()))
    rows = []
    for seed in range(seeds):
        a = layer_stats(build(dy, arch, width, data, seed), images, labels, lr)
        b = layer_stats(build(fix, arch, width, data, seed), images, labels, lr)
        for name, row in a.items():
            if "eta_mean" not in row or name not in b:
                continue
            rows.append(
                {
                    "layer": name,
                    "seed": seed,
                    "kernel_std_ratio": row["kernel_std"] / b[name]["kernel_std"],
                    "out_std_ratio": row["out_std"] / b[name]["out_std"],
                    "step_ratio_dy": row["step_ratio"],
                    "step_ratio_fix": b[name]["step_ratio"],
                    "eta_mean": row["eta_mean"],
                    "eta_spread": row["eta_spread"],
                    "sum_eta_sq": row["sum_eta_sq"],
                }
            )
    table = pd.DataFrame(rows).groupby("layer", sort=False).mean(numeric_only=True).drop(columns="seed")
    table["step_dy_over_fix"] = table["step_ratio_dy"] / table["step_ratio_fix"]
    return table


def predictor_activity(model: nn.Module, images: torch.Tensor) -> dict[str, float]:
    """In eval mode on ``images``: the coefficients' mean and std over images (median over the
    predictors), the predictors whose coefficients do not vary at all over the images, and the
    hidden ReLU units that are zero on every image (dead: they pass no gradient)."""
    model.eval()
    hidden: dict[str, torch.Tensor] = {}
    coefficients: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, CoefficientPredictor):
            if isinstance(module.fc, nn.Sequential):
                handles.append(
                    module.fc[1].register_forward_hook(lambda m, a, o, n=name: hidden.update({n: o.clone()}))
                )
            handles.append(
                module.register_forward_hook(
                    lambda m, a, o, n=name: coefficients.update({n: torch.cat([t.flatten(1) for t in o], 1)})
                )
            )
    with torch.no_grad():
        model(images)
    for h in handles:
        h.remove()
    spreads = [eta.std(0).mean().item() for eta in coefficients.values()]
    return {
        "eta_mean": statistics.median(eta.mean().item() for eta in coefficients.values()),
        "eta_spread": statistics.median(spreads),
        "constant_predictors": sum(s < 1e-4 for s in spreads),
        "predictors": len(spreads),
        "dead_units": sum(int((h.amax(0) <= 0).sum()) for h in hidden.values()),
        "hidden_units": sum(h.shape[1] for h in hidden.values()),
    }


def trained_activity(study_dir: Path) -> None:
    """:func:`predictor_activity` of every trained Dy seed of a claims study (best checkpoints)."""
    from dynsweep.checkpoints import load_task

    if "digits" in study_dir.name:
        images = EmbeddedDigits("val", augment=False).images
    else:
        images = Glyphs("val", train_per_class=100, val_per_class=50).images
    for params in sorted(study_dir.glob("trial_*/params.json")):
        preset = json.loads(params.read_text()).get("preset") or ""
        if not preset.startswith("dy_"):
            continue
        rows = [
            predictor_activity(load_task(checkpoint).model, images)
            for checkpoint in sorted(params.parent.glob("seed_*/checkpoints/best-*.ckpt"))
        ]
        if rows:
            mean = pd.DataFrame(rows).mean()
            print(
                f"{study_dir.name} {preset}, {len(rows)} trained seeds (means): coefficients {mean.eta_mean:.3f}, "
                f"spread over images {mean.eta_spread:.4f}; constant over images: {mean.constant_predictors:.1f} "
                f"of {mean.predictors:.0f} predictors; dead hidden units {mean.dead_units:.1f} of {mean.hidden_units:.0f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width-resnet", type=float, default=0.125)
    parser.add_argument("--width-mobile", type=float, default=0.25)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--trained", type=Path, nargs="*", default=[], help="claims study directories")
    parser.add_argument("--no-init", action="store_true", help="only the trained checkpoints")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pd.set_option("display.width", 200, "display.max_rows", 100, "display.precision", 3)
    for study_dir in args.trained:
        trained_activity(study_dir)
    if args.no_init:
        return
    for (dy, fix, arch), width in zip(PAIRS, (args.width_resnet, args.width_mobile)):
        table = compare(dy, fix, arch, width, args.seeds, args.lr)
        data = GlyphsDataModule(train_per_class=1, val_per_class=1)
        widths = predictor_widths(build(dy, arch, width, data, 0))
        print(f"\n{dy} vs {fix}, width_mult {width}, {args.seeds} seeds, one SGD step at lr {args.lr}")
        print(table.to_string())
        medians = {c: statistics.median(table[c]) for c in table.columns}
        print("medians:", ", ".join(f"{k} {v:.3g}" for k, v in medians.items()))
        print(f"predictor hidden widths: {widths}")
        images = Glyphs("val", train_per_class=100, val_per_class=50).images
        activity = pd.DataFrame(
            [predictor_activity(build(dy, arch, width, data, s), images) for s in range(args.seeds)]
        )
        print("at init (mean over seeds):", ", ".join(f"{k} {v:.4g}" for k, v in activity.mean().items()))


if __name__ == "__main__":
    main()
