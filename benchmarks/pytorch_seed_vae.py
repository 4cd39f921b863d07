#!/usr/bin/python3
"""The seed series' MLP VAE (vae-playground's models/vae.py) in PyTorch, as the peer of
`vae_cuda --preset vae-playground`: 784-392-196-128 with BatchNorm1d and LeakyReLU(0.1), a last encoder
Linear(128, H), mu and log-variance heads, a mirrored decoder with a Tanh output; data scaled to [-1, 1];
loss alpha * MSE (mean over batch and pixels) + KL (summed over the latent, mean over the batch); Adam;
ReduceLROnPlateau on the validation loss, which is the test split. Module names follow the seed's, so
the engine's checkpoints load as its state_dict. Prints each epoch's losses; --json writes them.

Run with Debian's interpreter (/usr/bin/python3), which has python3-torch and python3-torchvision.
"""
import argparse
import json
import shutil
import time

import torch
from torch import nn
from torchvision import datasets

from pytorch_example import torchvision_root


class Flatten(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), -1)


class Stack(nn.Module):
    def __init__(self, channels, height, width):
        super().__init__()
        self.shape = (channels, height, width)

    def forward(self, x):
        return x.view(x.size(0), *self.shape)


class SeedVae(nn.Module):
    """The seed's layers at the seed's nn.Sequential positions (encoder.1 is the first Linear, after Flatten)."""

    def __init__(self, hidden_size=128, alpha=1024.0):
        super().__init__()
        self.alpha = alpha
        self.encoder = nn.Sequential(
            Flatten(),
            nn.Linear(784, 392), nn.BatchNorm1d(392), nn.LeakyReLU(0.1),
            nn.Linear(392, 196), nn.BatchNorm1d(196), nn.LeakyReLU(0.1),
            nn.Linear(196, 128), nn.BatchNorm1d(128), nn.LeakyReLU(0.1),
            nn.Linear(128, hidden_size))
        self.hidden2mu = nn.Linear(hidden_size, hidden_size)
        self.hidden2log_var = nn.Linear(hidden_size, hidden_size)
        self.decoder = nn.Sequential(
            nn.Linear(hidden_size, 128), nn.BatchNorm1d(128), nn.LeakyReLU(0.1),
            nn.Linear(128, 196), nn.BatchNorm1d(196), nn.LeakyReLU(0.1),
            nn.Linear(196, 392), nn.BatchNorm1d(392), nn.LeakyReLU(0.1),
            nn.Linear(392, 784), Stack(1, 28, 28), nn.Tanh())

    def reparametrize(self, mu, log_var):
        """A method, as in the seed, so tests/parity can supply the engine's eps."""
        return mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)

    def forward(self, x):
        hidden = self.encoder(x)
        mu, log_var = self.hidden2mu(hidden), self.hidden2log_var(hidden)
        return mu, log_var, self.decoder(self.reparametrize(mu, log_var))


def seed_loss_terms(model, x, mu, log_var, x_out):
    """The seed's two terms, each a batch mean: alpha * MSE over batch and pixels, and the KL."""
    kl = (-0.5 * (1 + log_var - mu ** 2 - torch.exp(log_var)).sum(dim=1)).mean(dim=0)
    recon = nn.MSELoss()(x.view_as(x_out), x_out) * model.alpha
    return recon, kl


def signed_images(split):
    """The split as the seed's transforms give it, ToTensor then Normalize(0.5, 0.5): (x / 255 - 0.5) / 0.5
    in float, the same operations in the same order, applied once to the whole split rather than per image
    through PIL (which made an epoch five times slower)."""
    images = split.data.unsqueeze(1).float().div(255).sub(0.5).div(0.5)
    return torch.utils.data.TensorDataset(images, split.targets)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/fashion-mnist")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--batch", type=int, default=144)
    parser.add_argument("--alpha", type=float, default=1024.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    parser.add_argument("--json")
    args = parser.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    root = torchvision_root(args.data)
    try:
        train, test = (signed_images(datasets.MNIST(root, train=split, download=False)) for split in (True, False))
        train_loader = torch.utils.data.DataLoader(train, batch_size=args.batch, shuffle=True)
        test_loader = torch.utils.data.DataLoader(test, batch_size=args.batch, shuffle=False)

        model = SeedVae(alpha=args.alpha)
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
        epochs = []
        for epoch in range(1, args.epochs + 1):
            lr = optimizer.param_groups[0]["lr"]
            model.train()
            start = time.perf_counter()
            train_total = 0.0
            for x, _ in train_loader:
                optimizer.zero_grad()
                mu, log_var, x_out = model(x)
                recon, kl = seed_loss_terms(model, x, mu, log_var, x_out)
                (recon + kl).backward()
                train_total += (recon + kl).item() * x.shape[0]
                optimizer.step()
            seconds = time.perf_counter() - start
            model.eval()
            test_total = 0.0
            with torch.no_grad():  # the seed's validation_step: running statistics, z sampled
                for x, _ in test_loader:
                    mu, log_var, x_out = model(x)
                    recon, kl = seed_loss_terms(model, x, mu, log_var, x_out)
                    test_total += (recon + kl).item() * x.shape[0]
            row = {"epoch": epoch, "train_loss": train_total / len(train), "test_loss": test_total / len(test),
                   "lr": lr, "seconds": seconds}
            scheduler.step(row["test_loss"])
            epochs.append(row)
            print(f"epoch {epoch:3d}  train {row['train_loss']:8.3f}  test {row['test_loss']:8.3f}  lr {lr:.3g}  "
                  f"{seconds:6.2f} s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"engine": "pytorch seed vae", "torch": torch.__version__, "threads": torch.get_num_threads(),
                       "seed": args.seed, "data": args.data, "epochs": epochs}, f, indent=1)


if __name__ == "__main__":
    main()
