#!/usr/bin/python3
"""PyTorch's VAE example (784-400-20, BCE + KL, Adam 1e-3, batch 128), rebuilt here as the CPU
baseline: same model, loss, optimiser and torchvision data pipeline, on any MNIST-format directory.
Prints each epoch's train and test loss per image and its seconds; --json writes them.

Run with Debian's interpreter (/usr/bin/python3), which has python3-torch and python3-torchvision.
"""
import argparse
import gzip
import json
import os
import shutil
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import datasets, transforms

FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


class ExampleVae(nn.Module):
    """The example's layers under its names: fc1, fc21 (mu), fc22 (logvar), fc3, fc4."""

    def __init__(self, pixels=784, hidden=400, latent=20):
        super().__init__()
        self.fc1 = nn.Linear(pixels, hidden)
        self.fc21 = nn.Linear(hidden, latent)
        self.fc22 = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, pixels)

    def reparameterize(self, mu, logvar):
        """z = mu + eps * sigma; a method, as in the example, so tests/parity can supply the engine's eps."""
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def forward(self, x):
        h = F.relu(self.fc1(x.view(x.shape[0], -1)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = self.reparameterize(mu, logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def example_loss_terms(recon, x, mu, logvar):
    """The example's reconstruction (BCE, summed) and KL terms, apart so tests/parity can compare each."""
    bce = F.binary_cross_entropy(recon, x.view(x.shape[0], -1), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce, kld


def example_loss(recon, x, mu, logvar):
    bce, kld = example_loss_terms(recon, x, mu, logvar)
    return bce + kld


def torchvision_root(data_dir):
    """torchvision's MNIST class reads ROOT/MNIST/raw/<name> uncompressed; lay the files out so."""
    root = tempfile.mkdtemp(prefix="vae_torch_data_")
    raw = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw)
    for name in FILES:
        plain, packed = os.path.join(data_dir, name), os.path.join(data_dir, name + ".gz")
        opener = (lambda: open(plain, "rb")) if os.path.exists(plain) else (lambda: gzip.open(packed, "rb"))
        with opener() as src, open(os.path.join(raw, name), "wb") as dst:
            shutil.copyfileobj(src, dst)
    return root


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/fashion-mnist")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    parser.add_argument("--json")
    args = parser.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    root = torchvision_root(args.data)
    try:
        to_tensor = transforms.ToTensor()
        train = datasets.MNIST(root, train=True, download=False, transform=to_tensor)
        test = datasets.MNIST(root, train=False, download=False, transform=to_tensor)
        train_loader = torch.utils.data.DataLoader(train, batch_size=128, shuffle=True)
        test_loader = torch.utils.data.DataLoader(test, batch_size=128, shuffle=False)

        model = ExampleVae()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        epochs = []
        for epoch in range(1, args.epochs + 1):
            model.train()
            start = time.perf_counter()
            train_total = 0.0
            for x, _ in train_loader:
                optimizer.zero_grad()
                recon, mu, logvar = model(x)
                loss = example_loss(recon, x, mu, logvar)
                loss.backward()
                train_total += loss.item()
                optimizer.step()
            seconds = time.perf_counter() - start
            model.eval()
            test_total = 0.0
            with torch.no_grad():
                for x, _ in test_loader:
                    recon, mu, logvar = model(x)
                    test_total += example_loss(recon, x, mu, logvar).item()
            row = {"epoch": epoch, "train_loss": train_total / len(train), "test_loss": test_total / len(test),
                   "seconds": seconds}
            epochs.append(row)
            print(f"epoch {epoch:3d}  train {row['train_loss']:8.3f}  test {row['test_loss']:8.3f}  {seconds:6.2f} s",
                  flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"engine": "pytorch example", "torch": torch.__version__, "threads": torch.get_num_threads(),
                       "seed": args.seed, "data": args.data, "epochs": epochs}, f, indent=1)


if __name__ == "__main__":
    main()
