#!/usr/bin/python3
"""Seconds per epoch of vae_cuda's CPU reference backend against PyTorch's VAE example, both on this
machine's cores and the same data, run one after the other by this script. Prints both medians and
their ratio; writes a JSON report (machine, commit, every epoch) to benchmarks/results/.

Usage: /usr/bin/python3 benchmarks/compare_cpu.py [--data DIR] [--epochs N] [--build DIR]
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def run_json(command, json_path):
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)
    with open(json_path) as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.path.join(ROOT, "data", "fashion-mnist"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    args = parser.parse_args()
    cores = os.cpu_count()

    with tempfile.TemporaryDirectory() as tmp:
        ours = run_json([os.path.join(args.build, "benchmarks", "bench_reference_epoch"), "--data", args.data,
                         "--epochs", str(args.epochs), "--json", os.path.join(tmp, "ours.json")],
                        os.path.join(tmp, "ours.json"))
        torch = run_json([sys.executable, os.path.join(HERE, "pytorch_example.py"), "--data", args.data,
                          "--epochs", str(args.epochs), "--threads", str(cores), "--json",
                          os.path.join(tmp, "torch.json")], os.path.join(tmp, "torch.json"))

    ours_median = ours["median_seconds_per_epoch"]
    torch_median = statistics.median(e["seconds"] for e in torch["epochs"])
    print(f"\nreference backend  {ours_median:7.2f} s/epoch  ({ours['threads']} threads)")
    print(f"PyTorch example    {torch_median:7.2f} s/epoch  ({torch['threads']} threads, torch {torch['torch']})")
    print(f"ratio              {torch_median / ours_median:7.1f}x faster than PyTorch")

    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    today = datetime.date.today().isoformat()
    report = {"date": today, "commit": commit, "cpu": cpu_model(), "cores": cores, "data": args.data,
              "epochs": args.epochs, "reference": ours, "pytorch": torch,
              "median_seconds_per_epoch": {"reference": ours_median, "pytorch": torch_median},
              "speedup_vs_pytorch": torch_median / ours_median}
    out = os.path.join(HERE, "results", f"{today}-cpu-{cores}cores-reference-vs-pytorch.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"report: {os.path.relpath(out, ROOT)}")


if __name__ == "__main__":
    main()
