"""A training step eager against ``torch.compile`` (the sweep's ``compile: true``), side by side.

One process per model and thread count: the model as the sweep trains it (``small_input``,
10 classes, 3 x 32 x 32 input), SGD with momentum, cross-entropy; the compiled copy is compiled
in place (``Module.compile()``, as dynsweep.sweep.child does). Prints the first compiled step
(compilation included), the median step of each (timed in alternation), the graphs and graph
breaks of ``torch._dynamo.explain``, and with ``--validation`` the compiles that validation adds
(eval mode at the batch size, then at the last, smaller batch) with each one's time.

    python -m benchmarks.compile_step --model dy_resnet18 --threads 1 --validation --explain
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from dynsweep.models import build_model


def training_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(steps: dict, repeats: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU (this process's) milliseconds per step, the candidates in alternation.

    On a shared machine the wall time includes waiting for a core; the CPU time does not (with one
    thread it is the step's own work; with more it adds the threads' spinning too).
    """
    for step in steps.values():
        step()
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {
        name: {
            "wall_ms": round(1000 * statistics.median(wall[name]), 1),
            "cpu_ms": round(1000 * statistics.median(cpu[name]), 1),
        }
        for name in steps
    }


def graphs(model: nn.Module, x: torch.Tensor) -> dict:
    # torch._dynamo.explain: private to torch (documented in its troubleshooting guide).
    explained = torch._dynamo.explain(model)(x)
    reasons = sorted({reason.reason.splitlines()[0][:160] for reason in explained.break_reasons})
    return {"graphs": explained.graph_count, "graph_breaks": explained.graph_break_count, "reasons": reasons}


def validation_compiles(model: nn.Module, batch: int, last: int) -> list[dict]:
    """Eval-mode forwards without autograd at ``batch`` then ``last`` (500 % 64 = 52 for the
    embedded digits' validation set): each new guard failure compiles again."""
    counters = torch._dynamo.utils.counters  # private to torch: Dynamo's own statistics
    rows = []
    model.eval()
    with torch.no_grad():
        for size in (batch, batch, last, last):
            before = counters["stats"]["unique_graphs"]
            x = torch.randn(size, 3, 32, 32)
            took = seconds(lambda x=x: model(x))
            new = counters["stats"]["unique_graphs"] - before
            rows.append({"batch": size, "seconds": round(took, 3), "new_graphs": new})
    model.train()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="dy_resnet18", help="a registry name (its default spec)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each")
    parser.add_argument("--validation", action="store_true", help="also count validation's compiles")
    parser.add_argument("--explain", action="store_true", help="also count graphs and graph breaks")
    parser.add_argument("--profile", type=int, default=0, help="print the N ops of most self CPU time")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    eager = build_model(args.model, None, num_classes=10, in_channels=3, small_input=True).train()
    compiled = copy.deepcopy(eager)
    compiled.compile()
    x, y = torch.randn(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))
    steps = {"eager": training_step(eager, x, y), "compiled": training_step(compiled, x, y)}
    first = {name: seconds(step) for name, step in steps.items()}
    medians = interleaved(steps, args.steps)
    result = {
        "model": args.model,
        "threads": args.threads,
        "batch": args.batch,
        "torch": torch.__version__,
        "first_step_s": {name: round(value, 2) for name, value in first.items()},
        "step": medians,
    }
    for name, step in steps.items() if args.profile else ():
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
            step()
        table = profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile)
        print(f"{name}:\n{table}")
    if args.validation:
        result["validation"] = validation_compiles(compiled, args.batch, 500 % args.batch or args.batch)
    if args.explain:
        torch._dynamo.reset()
        result["explain"] = graphs(copy.deepcopy(eager), x)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
