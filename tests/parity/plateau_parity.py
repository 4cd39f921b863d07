#!/usr/bin/python3
"""Parity of vae::ReduceLROnPlateau with PyTorch's torch.optim.lr_scheduler.ReduceLROnPlateau, run by
ctest (label parity).

For scripted metric sequences (plateaus, improvements just below and above the threshold, NaN and
infinite metrics, cooldown, min_lr reached, reductions skipped by eps, long noisy runs that plateau)
runs PyTorch's scheduler over an SGD optimizer of one dummy parameter and plateau_dump over the same
numbers, twice: straight through, and rebuilt from its state() half way. Every step's lr and best
must be bit-identical and the counters equal. Prints every compared figure; exits 1 naming each
mismatch. Run with Debian's interpreter (/usr/bin/python3), which has python3-torch.
"""
import argparse
import math
import random
import struct
import subprocess
import sys

import torch

DEFAULTS = {"factor": 0.1, "patience": 10, "threshold": 1e-4, "cooldown": 0, "min_lr": 0.0, "eps": 1e-8}


def loss_curve(seed, n, start, floor, tau, noise):
    """A noisy training curve: decays from start towards floor with time constant tau, so it improves
    early and then plateaus, with Gaussian noise of deviation `noise`."""
    rng = random.Random(seed)
    return [floor + (start - floor) * math.exp(-i / tau) + rng.gauss(0.0, noise) for i in range(n)]


def boundary_run():
    """Metrics one ulp either side of best * (1 - threshold) and exactly on it."""
    out, best = [1.0], 1.0
    for _ in range(12):
        edge = best * (1.0 - 0.1)
        out += [math.nextafter(edge, math.inf), edge, math.nextafter(edge, 0.0)]
        best = math.nextafter(edge, 0.0)
    return out


CASES = [
    ("defaults: falling, then a long plateau", 1e-3, {}, [10.0 - i for i in range(10)] + [1.0] * 40),
    ("improvements below and above a 1% threshold", 0.1, {"threshold": 1e-2, "patience": 1},
     [100.0, 99.5, 99.0, 98.0, 97.5, 97.1, 96.0, 95.9, 95.8, 95.7, 90.0, 89.2, 89.0, 88.9, 88.0]),
    ("one ulp around best * (1 - threshold)", 0.5, {"threshold": 0.1, "patience": 0, "factor": 0.5}, boundary_run()),
    ("NaN metrics", 0.01, {"patience": 2, "factor": 0.5},
     [float("nan"), 5.0, float("nan"), float("nan"), float("nan"), 4.0, float("nan"), 3.0, float("nan"),
      float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), float("nan")]),
    ("infinite metrics", 0.01, {"patience": 1, "factor": 0.5},
     [float("inf"), float("inf"), float("inf"), 2.0, 2.0, 2.0, float("-inf"), 1.0, 0.0, -1e300, 1.0, 1.0]),
    ("cooldown 3", 1.0, {"patience": 1, "cooldown": 3, "factor": 0.5},
     [1.0, 1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]),
    ("min_lr reached", 0.1, {"patience": 0, "factor": 0.1, "min_lr": 1e-4}, [1.0] * 12),
    ("min_lr 0: reductions stop by the eps rule", 1e-3, {"patience": 0, "factor": 0.1}, [1.0] * 12),
    ("eps skips a reduction of exactly 1e-7 (rounded below it)", 1e-6, {"patience": 0, "factor": 0.9, "eps": 1e-7},
     [1.0] * 5),
    ("eps stops reductions near eps / (1 - factor)", 1e-6, {"patience": 0, "factor": 0.9, "eps": 1e-8}, [1.0] * 40),
    ("factor 1/3, eps 0", 0.3, {"patience": 0, "factor": 1.0 / 3.0, "eps": 0.0}, [1.0] * 60),
    ("long noisy run, several reductions", 3e-3,
     {"patience": 3, "factor": 0.7, "cooldown": 2, "threshold": 1e-3, "min_lr": 1e-6},
     loss_curve(1, 300, 250.0, 100.0, 40.0, 0.3)),
    ("long run, defaults", 1e-3, {}, loss_curve(2, 400, 120.0, 100.0, 60.0, 0.05)),
]


def pytorch_rows(lr, hyper, metrics):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", threshold_mode="rel", **hyper)
    rows = []
    for m in metrics:
        scheduler.step(m)
        rows.append((optimizer.param_groups[0]["lr"], float(scheduler.best), scheduler.num_bad_epochs,
                     scheduler.cooldown_counter, scheduler.last_epoch))
    return rows


def engine_rows(dump, lr, hyper, metrics, restore_at):
    args = [dump, "--lr", repr(lr), "--factor", repr(hyper["factor"]), "--patience", str(hyper["patience"]),
            "--threshold", repr(hyper["threshold"]), "--cooldown", str(hyper["cooldown"]),
            "--min-lr", repr(float(hyper["min_lr"])), "--eps", repr(hyper["eps"]),
            "--restore-at", str(restore_at), "--"] + [repr(m) for m in metrics]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout.split("\n")
    rows = []
    for line in out:
        if line:
            lr_text, best, bad, cooldown, epoch = line.split()
            rows.append((float(lr_text), float(best), int(bad), int(cooldown), int(epoch)))
    return rows


def same_bits(a, b):
    return struct.pack("<d", a) == struct.pack("<d", b)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dump", required=True, help="the plateau_dump binary")
    args = parser.parse_args()
    print(f"torch {torch.__version__}")
    failures = []
    for name, lr, overrides, metrics in CASES:
        hyper = dict(DEFAULTS, **overrides)
        expected = pytorch_rows(lr, hyper, metrics)
        reductions = sum(1 for i in range(1, len(expected)) if expected[i][0] != expected[i - 1][0])
        print(f"== {name}: lr {lr!r}, {hyper}, {len(metrics)} steps, {reductions} reductions, "
              f"final lr {expected[-1][0]!r}")
        for restore_at in (-1, len(metrics) // 2):
            got = engine_rows(args.dump, lr, hyper, metrics, restore_at)
            label = "straight" if restore_at < 0 else f"restored at step {restore_at}"
            if len(got) != len(expected):
                failures.append(f"{name} ({label}): {len(got)} rows, PyTorch {len(expected)}")
                continue
            for i, (e, g) in enumerate(zip(expected, got)):
                ok = same_bits(e[0], g[0]) and same_bits(e[1], g[1]) and e[2:] == g[2:]
                print(f"  {label:>22} step {i + 1:3d} metric {metrics[i]!r:>24}: lr engine {g[0]!r:>24} "
                      f"torch {e[0]!r:>24}  best {g[1]!r} / {e[1]!r}  bad {g[2]}/{e[2]}  cooldown {g[3]}/{e[3]}  "
                      f"epoch {g[4]}/{e[4]}  {'ok' if ok else 'MISMATCH'}")
                if not ok:
                    failures.append(f"{name} ({label}) step {i + 1}: engine {g}, PyTorch {e}")
    if failures:
        for f in failures:
            print("MISMATCH:", f, file=sys.stderr)
        return 1
    print(f"all {len(CASES)} sequences bit-identical to PyTorch, straight and restored")
    return 0


if __name__ == "__main__":
    sys.exit(main())
