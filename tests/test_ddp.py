"""DistributedDataParallel training of DynamicConv2d without find_unused_parameters.

Two CPU processes (gloo) train a small model with an own-predictor layer, a block-level predictor
serving two shared_predictor layers and a dyconv layer, on different data per rank, for each
exact strategy. Every parameter must receive a gradient (otherwise DDP with
find_unused_parameters=False errors or leaves the reduction unfinished) and the ranks must end
with bit-identical parameters.
"""

from __future__ import annotations

import datetime
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dynsweep.nn import CoefficientPredictor, DynamicConv2d

WORLD_SIZE = 2
STEPS = 3
BATCH = 4
NUM_CLASSES = 5


class SharedBlock(nn.Module):
    """One CPM for a pointwise and a depthwise dynamic layer (the paper's one CPM per block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.cpm = CoefficientPredictor(channels, [(channels, 4), (channels, 4)], "dynet", reduction=2)
        self.pw = DynamicConv2d(channels, channels, 1, num_bases=4, shared_predictor=True)
        self.dw = DynamicConv2d(channels, channels, 3, padding=1, groups=channels, num_bases=4, shared_predictor=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pw_coefficients, dw_coefficients = self.cpm(x)
        return self.dw(F.relu(self.pw(x, pw_coefficients)), dw_coefficients) + x


class TinyDynamicNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # Own two-layer predictor.
        self.stem = DynamicConv2d(3, 8, 3, stride=2, padding=1, bias=True, num_bases=3, reduction=1)
        self.block = SharedBlock(8)
        self.mix = DynamicConv2d(8, 12, 3, padding=1, groups=2, num_bases=4, mode="dyconv", temperature=5.0)
        self.head = nn.Linear(12, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(self.block(x))
        x = F.relu(self.mix(x))
        return self.head(x.mean(dim=(2, 3)))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, port: int, strategy: str) -> None:
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE, timeout=datetime.timedelta(seconds=60))
    try:
        torch.manual_seed(0)  # DDP broadcasts rank 0's parameters anyway
        model = TinyDynamicNet()
        layers = [m for m in model.modules() if isinstance(m, DynamicConv2d)]
        for layer in layers:
            layer.strategy = strategy
        initial = [p.detach().clone() for p in model.parameters()]
        ddp = DistributedDataParallel(model, find_unused_parameters=False)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
        generator = torch.Generator().manual_seed(1000 + rank)  # different data on each rank
        names = [name for name, _ in model.named_parameters()]
        for step in range(STEPS):
            x = torch.randn(BATCH, 3, 16, 16, generator=generator)
            target = torch.randint(0, NUM_CLASSES, (BATCH,), generator=generator)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(ddp(x), target).backward()
            missing = [n for n, p in model.named_parameters() if p.grad is None]
            assert not missing, f"rank {rank}, step {step}, strategy {strategy}: no gradient for {missing}"
            zero = [n for n, p in model.named_parameters() if not p.grad.abs().sum() > 0]
            assert not zero, f"rank {rank}, step {step}, strategy {strategy}: all-zero gradient for {zero}"
            bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
            assert not bad, f"rank {rank}, step {step}, strategy {strategy}: non-finite gradient for {bad}"
            optimizer.step()

        unchanged = [n for n, p, p0 in zip(names, model.parameters(), initial) if torch.equal(p, p0)]
        assert not unchanged, f"rank {rank}, strategy {strategy}: parameters did not train: {unchanged}"
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(WORLD_SIZE)]
        dist.all_gather(gathered, flat)
        if rank == 0:
            for other in range(1, WORLD_SIZE):
                if not torch.equal(gathered[0], gathered[other]):
                    diffs = []
                    offset = 0
                    for name, p in zip(names, model.parameters()):
                        a = gathered[0][offset : offset + p.numel()]
                        b = gathered[other][offset : offset + p.numel()]
                        if not torch.equal(a, b):
                            diffs.append(f"{name} (max |diff| {(a - b).abs().max().item():.3g})")
                        offset += p.numel()
                    raise AssertionError(
                        f"strategy {strategy}: parameters differ between rank 0 and rank {other}: {diffs}"
                    )
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("strategy", ["feature", "grouped", "matmul"])
def test_ddp_trains_without_unused_parameters(strategy: str) -> None:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    try:
        mp.spawn(_worker, args=(_free_port(), strategy), nprocs=WORLD_SIZE, join=True)
    except mp.ProcessRaisedException as error:  # carries the child's traceback and message
        pytest.fail(f"a DDP worker failed:\n{error}", pytrace=False)
    except mp.ProcessExitedException as error:
        pytest.fail(f"a DDP worker died: {error}", pytrace=False)
