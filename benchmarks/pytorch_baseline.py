#!/usr/bin/python3
"""PyTorch's VAE example (784-400-20, batch 128, Adam 1e-3) timed per epoch, as vae_bench times ours.

Modes: eager, torch.compile, and torch.compile(mode="reduce-overhead") (CUDA graphs); data either
already on the device (pre-loaded tensors, a shuffled index per epoch: "resident") or through the
example's own torchvision DataLoader ("streamed"); FP32 and TF32 matmuls. Each configuration trains
its warm-up epochs, then reports the median seconds of the timed ones, images/s and the test loss.
--json writes vae_bench's report schema, so `vae_bench --merge FILE` puts these rows beside ours.

On the GPU machine: python3 benchmarks/pytorch_baseline.py --data DIR --json pytorch.json
Quick CPU check:    /usr/bin/python3 benchmarks/pytorch_baseline.py --device cpu --epochs 1 --modes eager
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_example import ExampleVae, example_loss, torchvision_root  # noqa: E402  (the model and loss, once)

MODES = ("eager", "compile", "compile+cudagraphs")
DATA_MODES = ("resident", "streamed")
IMAGES, TEST_IMAGES, PIXELS = 60000, 10000, 784


class VaeWithLoss(nn.Module):
    """The example's forward and loss as one module, so torch.compile sees (and fuses) both."""

    def __init__(self):
        super().__init__()
        self.vae = ExampleVae()

    def forward(self, x):
        recon, mu, logvar = self.vae(x)
        return example_loss(recon, x, mu, logvar)


def load_splits(data_dir):
    """(train, test) as float tensors [n, 784] in [0, 1], from an MNIST-format dir or synthetic."""
    if not data_dir:
        generator = torch.Generator().manual_seed(1)
        return tuple(torch.randint(0, 256, (n, PIXELS), generator=generator).float() / 255 for n in (IMAGES, TEST_IMAGES))
    from torchvision import datasets

    root = torchvision_root(data_dir)
    try:
        return tuple(datasets.MNIST(root, train=t, download=False).data.reshape(-1, PIXELS).float() / 255
                     for t in (True, False))
    finally:
        shutil.rmtree(root, ignore_errors=True)


class ExampleLoader:
    """The example's pipeline: torchvision's MNIST dataset, ToTensor, DataLoader(batch, shuffle),
    with the example's num_workers=1 and pin_memory on CUDA. Synthetic data goes through a
    TensorDataset instead when no directory is given."""

    def __init__(self, data_dir, train_pixels, batch, cuda):
        from torchvision import datasets, transforms

        kwargs = {"num_workers": 1, "pin_memory": True} if cuda else {}
        self.root = torchvision_root(data_dir) if data_dir else None
        if self.root:
            dataset = datasets.MNIST(self.root, train=True, download=False, transform=transforms.ToTensor())
        else:
            dataset = torch.utils.data.TensorDataset(train_pixels, torch.zeros(len(train_pixels)))
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, **kwargs)

    def close(self):
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)


def build_step(mode, device):
    model = VaeWithLoss().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    compiled = model
    if mode == "compile":
        compiled = torch.compile(model)
    elif mode == "compile+cudagraphs":
        compiled = torch.compile(model, mode="reduce-overhead")
    mark_step = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)

    def step(x, total):
        if mode == "compile+cudagraphs" and mark_step:
            mark_step()  # each call is a new training step: the graph's outputs may be reused
        optimizer.zero_grad(set_to_none=True)
        loss = compiled(x)
        loss.backward()
        optimizer.step()
        total += loss.detach()  # summed on the device: no host sync per step

    return model, step


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_epoch(step, batches, device):
    """Seconds for one epoch of `batches` (an iterable of [b, 784]-shaped device tensors)."""
    total = torch.zeros((), device=device)
    synchronize(device)
    start = time.perf_counter()
    for x in batches:
        step(x, total)
    synchronize(device)
    return time.perf_counter() - start, total.item()


def resident_batches(train, batch):
    order = torch.randperm(len(train), device=train.device)
    for first in range(0, len(train), batch):
        yield train[order[first:first + batch]]


def streamed_batches(loader, device):
    for x, _ in loader.loader:
        yield x.to(device, non_blocking=True).view(x.shape[0], -1)


def test_loss(model, test, batch):
    model.eval()
    total = 0.0
    with torch.no_grad():
        for first in range(0, len(test), batch):
            total += model(test[first:first + batch]).item()
    model.train()
    return total / len(test)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_report(device):
    if device.type != "cuda":
        return {"device": cpu_model(), "driver": None, "clocks": None}
    props = torch.cuda.get_device_properties(device)
    driver = None
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        pass
    clocks = {"sm_count": props.multi_processor_count, "l2_bytes": getattr(props, "L2_cache_size", None),
              "sm_clock_khz": getattr(props, "clock_rate", None),
              "memory_clock_khz": getattr(props, "memory_clock_rate", None),
              "bus_width_bits": getattr(props, "memory_bus_width", None)}
    return {"device": props.name, "driver": driver, "clocks": clocks}


def commit_of_checkout():
    if os.environ.get("VAE_COMMIT"):
        return os.environ["VAE_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(os.path.abspath(__file__)),
                              capture_output=True, text=True, timeout=30).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def set_precision(precision, device):
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")


def csv_list(allowed):
    def parse(text):
        items = [item.strip() for item in text.split(",") if item.strip()]
        bad = [item for item in items if item not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(allowed)}")
        return items
    return parse


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="", help="MNIST-format directory (default: synthetic images)")
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per configuration")
    parser.add_argument("--warmup-epochs", type=int, default=None, help="default: 1 on cuda (compilation, caches), 0 on cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--modes", type=csv_list(MODES), default=list(MODES))
    parser.add_argument("--data-modes", type=csv_list(DATA_MODES), default=list(DATA_MODES))
    parser.add_argument("--precisions", type=csv_list(("fp32", "tf32")), default=None,
                        help="default: fp32,tf32 on cuda, fp32 on cpu")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("pytorch_baseline: no CUDA device; nothing to measure (use --device cpu for a CPU run)")
        return 0
    warmups = args.warmup_epochs if args.warmup_epochs is not None else (1 if device.type == "cuda" else 0)
    precisions = args.precisions or (["fp32", "tf32"] if device.type == "cuda" else ["fp32"])
    modes = list(args.modes)
    if not hasattr(torch, "compile"):
        skipped = [m for m in modes if m != "eager"]
        if skipped:
            print(f"pytorch_baseline: torch {torch.__version__} has no torch.compile; skipping {', '.join(skipped)}")
        modes = [m for m in modes if m == "eager"]
    if device.type != "cuda" and "compile+cudagraphs" in modes:
        print("pytorch_baseline: CUDA graphs need a CUDA device; skipping compile+cudagraphs")
        modes.remove("compile+cudagraphs")

    torch.manual_seed(args.seed)
    train_cpu, test_cpu = load_splits(args.data)
    train, test = train_cpu.to(device), test_cpu.to(device)
    results = []
    for data_mode in args.data_modes:
        loader = ExampleLoader(args.data, train_cpu, args.batch, device.type == "cuda") if data_mode == "streamed" else None
        try:
            for precision in precisions:
                set_precision(precision, device)
                for mode in modes:
                    torch.manual_seed(args.seed)
                    model, step = build_step(mode, device)
                    seconds = []
                    for epoch in range(warmups + args.epochs):
                        batches = (resident_batches(train, args.batch) if loader is None
                                   else streamed_batches(loader, device))
                        elapsed, _ = train_epoch(step, batches, device)
                        if epoch >= warmups:
                            seconds.append(elapsed)
                    median = statistics.median(seconds)
                    loss = test_loss(model, test, args.batch)
                    row = {"group": "epoch", "op": "train epoch", "shape": f"batch {args.batch}, {data_mode}",
                           "impl": f"pytorch {mode}", "precision": precision, "median_us": median * 1e6,
                           "ratio_to_ours": None, "roofline_share": None,
                           "images_per_second": len(train) / median, "test_loss": loss}
                    results.append(row)
                    print(f"{row['shape']:22} {row['impl']:28} {precision}  {median * 1e3:9.1f} ms/epoch  "
                          f"{row['images_per_second']:9.0f} img/s  test loss {loss:.2f}", flush=True)
        finally:
            if loader is not None:
                loader.close()

    if args.json:
        report = device_report(device)
        report.update({"commit": commit_of_checkout(), "torch": torch.__version__, "results": results})
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
