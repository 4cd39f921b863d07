#!/usr/bin/python3
"""The importance-weighted bound of `vae_cuda --evaluate` against an independent computation in PyTorch
(ctest label parity), for PyTorch's VAE example (Bernoulli) and the seed series' VAE (BatchNorm,
Gaussian likelihood).

For each model: the engine trains one epoch on --data, then evaluates the first N test images with K
importance samples and writes every figure as JSON; iwae_dump writes the eps it drew. Here the same
checkpoint is loaded into the PyTorch model, and log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x)
is computed from those eps with torch.logsumexp in float64, as are the ELBO, the KL per dimension, the
variance of the posterior means and the active units. Exits 1 naming each mismatch.

Run with Debian's interpreter (/usr/bin/python3), which has python3-torch.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from pytorch_evaluate import ACTIVE_UNIT_THRESHOLD, Evaluator, evaluate  # noqa: E402
from vae_files import data_file, read_idx, read_safetensors  # noqa: E402

# Both sides run the networks in float32 on the same weights, inputs and eps, and sum the log-weights in
# double; they differ by float32 summation order inside the GEMMs (measured below 1e-6 relative on the
# per-image bound), so 1e-4 relative, the figure, leaves a wide margin while a wrong term (the
# constant, a missing 1/2, the prior's or the posterior's density) is off by far more.
RELATIVE_TOLERANCE = 1e-4

CONFIGS = [
    {"name": "example 784-400-20 (Bernoulli)", "flags": [], "images": 200, "samples": 50},
    {"name": "seed VAE 784-392-196-128-128 (BatchNorm, Gaussian)", "flags": ["--preset", "vae-playground"],
     "images": 100, "samples": 20},
]


def write_idx(path, array):
    magic = 0x0800 | array.ndim
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def small_data(data, out, count):
    """The first `count` test images (and two training images, which --evaluate does not read) in out."""
    os.makedirs(out)
    for split, keep in (("t10k", count), ("train", 2)):
        images = read_idx(data_file(data, f"{split}-images-idx3-ubyte"))[:keep]
        labels = read_idx(data_file(data, f"{split}-labels-idx1-ubyte"))[:keep]
        write_idx(os.path.join(out, f"{split}-images-idx3-ubyte"), images)
        write_idx(os.path.join(out, f"{split}-labels-idx1-ubyte"), labels)
    return read_idx(os.path.join(out, "t10k-images-idx3-ubyte"))


def worst_relative(engine, reference):
    engine = torch.tensor(engine, dtype=torch.float64)
    return float(((engine - reference).abs() / reference.abs().clamp_min(1e-12)).max())


def check(config, args, work, failures):
    run, small = os.path.join(work, "run"), os.path.join(work, "small")
    subprocess.run([args.engine, "--train", args.data, "--epochs", "1", "--device", "cpu", "--out", run, "--no-progress",
                    *config["flags"]], check=True, stdout=subprocess.DEVNULL)
    checkpoint = os.path.join(run, "checkpoint.safetensors")
    pixels = small_data(args.data, small, config["images"])
    report = os.path.join(work, "evaluation.json")
    seed = "5"
    subprocess.run([args.engine, "--evaluate", checkpoint, "--data-dir", small, "--importance-samples",
                    str(config["samples"]), "--seed", seed, "--json", report, "--out", os.path.join(work, "traversal.png"),
                    "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    with open(report) as f:
        engine = json.load(f)
    evaluator = Evaluator(checkpoint)
    latent = evaluator.latent
    eps_file = os.path.join(work, "eps.safetensors")
    subprocess.run([args.dump, "--seed", seed, "--images", str(config["images"]), "--samples", str(config["samples"]),
                    "--latent", str(latent), "--out", eps_file], check=True)
    eps = read_safetensors(eps_file)["eps"]
    # Chunks of images and samples smaller than the whole, so the running log-sum-exp is exercised too.
    torch_side = evaluate(evaluator, pixels, config["samples"],
                          lambda first, count, k0, k: eps[first:first + count, k0:k0 + k], chunk_images=64,
                          chunk_samples=7)

    print(f"{config['name']}: {config['images']} images, K = {config['samples']}")
    per_image = engine["per_image"]
    for name in ("iwae", "elbo", "reconstruction", "kl"):
        error = worst_relative(per_image[name], torch_side[name])
        print(f"  {name:15s} mean engine {np.mean(per_image[name]):12.4f}  torch {float(torch_side[name].mean()):12.4f}"
              f"  worst relative error per image {error:.2e}")
        if error > RELATIVE_TOLERANCE:
            failures.append(f"{config['name']}: {name} per image differs by {error:.2e} relative")
    for name in ("kl_per_dim", "mu_variance"):
        values = engine["per_dimension"]["kl" if name == "kl_per_dim" else name]
        error = worst_relative(values, torch_side[name])
        print(f"  {name:15s} worst relative error per dimension {error:.2e}")
        if error > RELATIVE_TOLERANCE:
            failures.append(f"{config['name']}: {name} differs by {error:.2e} relative")
    torch_active = int((torch_side["mu_variance"] > ACTIVE_UNIT_THRESHOLD).sum())
    print(f"  active units    engine {engine['active_units']}  torch {torch_active} of {latent}")
    if engine["active_units"] != torch_active:
        failures.append(f"{config['name']}: active units {engine['active_units']} against {torch_active}")
    if abs(engine["log_likelihood_constant"] - torch_side["constant"]) > 1e-9 * max(1.0, abs(torch_side["constant"])):
        failures.append(f"{config['name']}: log-likelihood constant {engine['log_likelihood_constant']} "
                        f"against {torch_side['constant']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", required=True, help="the vae_cuda binary")
    parser.add_argument("--dump", required=True, help="the iwae_dump binary")
    parser.add_argument("--data", required=True, help="MNIST-format data (Fashion-MNIST here)")
    args = parser.parse_args()
    failures = []
    for config in CONFIGS:
        with tempfile.TemporaryDirectory() as work:
            check(config, args, work, failures)
    for failure in failures:
        print(f"FAIL {failure}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
