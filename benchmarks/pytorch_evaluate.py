#!/usr/bin/python3
"""PyTorch's side of `vae_cuda --evaluate`: for a vae_cuda checkpoint of PyTorch's VAE example or of the
seed series' VAE, the ELBO and its parts, the importance-weighted bound of Burda et al. (2016), the KL per
latent dimension and the active units, computed independently in PyTorch: float32 networks as trained,
log-weights in float64, torch.logsumexp. With its own eps from torch's generator it is a peer to compare
against (the figures agree within Monte Carlo error); tests/parity/iwae_parity.py hands it the engine's eps
and holds it to 1e-4.

    /usr/bin/python3 benchmarks/pytorch_evaluate.py out/checkpoint.safetensors data/fashion-mnist --samples 100
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_example import ExampleVae  # noqa: E402
from pytorch_seed_vae import SeedVae  # noqa: E402
from vae_files import data_file, read_idx, read_safetensors  # noqa: E402

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al.: Var_x(E_q[z]) above this


class Evaluator:
    """A checkpoint's model in evaluation mode, and the pieces of the bound for a batch of images."""

    def __init__(self, checkpoint):
        weights = {k: v for k, v in read_safetensors(checkpoint).items() if not k.startswith("optimizer.")}
        self.seed_vae = "hidden2mu.weight" in weights
        if self.seed_vae:
            self.model = SeedVae(hidden_size=weights["hidden2mu.weight"].shape[0])
        else:
            pixels, hidden = weights["fc1.weight"].shape[1], weights["fc1.weight"].shape[0]
            self.model = ExampleVae(pixels, hidden, weights["fc21.weight"].shape[0])
        self.model.load_state_dict(weights, strict=True)
        self.model.eval()  # BatchNorm from its running statistics
        self.latent = weights["hidden2mu.weight" if self.seed_vae else "fc21.weight"].shape[0]

    def inputs(self, pixels):
        """uint8 images [n, pixels] as the model reads them: x/255, or (x/255 - 0.5)/0.5 for the seed's."""
        unit = torch.from_numpy(pixels.reshape(pixels.shape[0], -1).copy()).float().div(255)
        return unit.sub(0.5).div(0.5) if self.seed_vae else unit

    @torch.no_grad()
    def posterior(self, x):
        if self.seed_vae:
            hidden = self.model.encoder(x.view(x.shape[0], 1, 28, 28))
            return self.model.hidden2mu(hidden), self.model.hidden2log_var(hidden)
        h = F.relu(self.model.fc1(x))
        return self.model.fc21(h), self.model.fc22(h)

    def log_likelihood_constant(self, pixels):
        """log p(x|z) = constant - reconstruction; the Gaussian's sigma^2 = D / (2 alpha)."""
        return -0.5 * pixels * math.log(math.pi * pixels / self.model.alpha) if self.seed_vae else 0.0

    @torch.no_grad()
    def reconstruction(self, x, z):
        """The training loss's reconstruction term, float64, for images x [n, D] and latents z [n, k, L]."""
        n, k, latent = z.shape
        flat = z.reshape(n * k, latent)
        if self.seed_vae:
            pre_tanh = self.model.decoder[:10](flat).reshape(n, k, -1)  # the Linear before Stack and Tanh
            squared = (torch.tanh(pre_tanh.double()) - x.double()[:, None, :]) ** 2
            return self.model.alpha * squared.mean(dim=2)
        logits = self.model.fc4(F.relu(self.model.fc3(flat))).reshape(n, k, -1)
        target = x.double()[:, None, :].expand(n, k, x.shape[1])
        return F.binary_cross_entropy_with_logits(logits.double(), target, reduction="none").sum(dim=2)

    @torch.no_grad()
    def log_weights(self, x, mu, logvar, eps):
        """log p(x, z_k) - log q(z_k | x) [n, k] for z_k = mu + sigma eps_k, and the reconstruction terms."""
        z = mu[:, None, :] + torch.exp(0.5 * logvar)[:, None, :] * eps  # float32, as the decoder reads it
        reconstruction = self.reconstruction(x, z)
        z, eps, logvar64 = z.double(), eps.double(), logvar.double()
        log_ratio = 0.5 * (logvar64[:, None, :] + eps ** 2 - z ** 2).sum(dim=2)  # log p(z) - log q(z|x)
        return self.log_likelihood_constant(x.shape[1]) - reconstruction + log_ratio, reconstruction


def evaluate(evaluator, pixels, samples, eps_source, chunk_images=100, chunk_samples=500, progress=None):
    """Every figure for uint8 images [n, D]; eps_source(first image, images, first sample, samples) gives
    eps [images, samples, latent]. Returns per-image and per-dimension tensors (float64)."""
    n = pixels.shape[0]
    iwae, elbo, recon, kl, mus = [], [], [], [], []
    kl_per_dim = torch.zeros(evaluator.latent, dtype=torch.float64)
    for first in range(0, n, chunk_images):
        x = evaluator.inputs(pixels[first:first + chunk_images])
        mu, logvar = evaluator.posterior(x)
        running = None
        for k0 in range(0, samples, chunk_samples):
            k = min(chunk_samples, samples - k0)
            weights, reconstruction = evaluator.log_weights(x, mu, logvar, eps_source(first, x.shape[0], k0, k))
            if k0 == 0:
                first_reconstruction = reconstruction[:, 0]
            chunk = torch.logsumexp(weights, dim=1)
            running = chunk if running is None else torch.logaddexp(running, chunk)
        mu64, logvar64 = mu.double(), logvar.double()
        terms = -0.5 * (1 + logvar64 - mu64 ** 2 - torch.exp(logvar64))
        kl_per_dim += terms.sum(dim=0)
        iwae.append(running - math.log(samples))
        recon.append(first_reconstruction)
        kl.append(terms.sum(dim=1))
        elbo.append(evaluator.log_likelihood_constant(x.shape[1]) - first_reconstruction - terms.sum(dim=1))
        mus.append(mu64)
        if progress:
            progress(min(first + chunk_images, n), n)
    mu_all = torch.cat(mus)
    return {"iwae": torch.cat(iwae), "elbo": torch.cat(elbo), "reconstruction": torch.cat(recon), "kl": torch.cat(kl),
            "kl_per_dim": kl_per_dim / n, "mu_variance": mu_all.var(dim=0, unbiased=False),
            "constant": evaluator.log_likelihood_constant(pixels.reshape(n, -1).shape[1])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("data_dir")
    parser.add_argument("--samples", type=int, default=100, help="importance samples K")
    parser.add_argument("--split", choices=["test", "train"], default="test")
    parser.add_argument("--seed", type=int, default=1, help="of torch's generator for eps")
    parser.add_argument("--images", type=int, default=0, help="the first N images only (0: all)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    evaluator = Evaluator(args.checkpoint)
    prefix = "t10k" if args.split == "test" else "train"
    pixels = read_idx(data_file(args.data_dir, f"{prefix}-images-idx3-ubyte"))
    if args.images:
        pixels = pixels[:args.images]
    start = time.time()
    figures = evaluate(evaluator, pixels, args.samples,
                       lambda first, count, k0, k: torch.randn(count, k, evaluator.latent),
                       progress=lambda done, total: print(f"\r{done}/{total}", end="", file=sys.stderr, flush=True))
    print(file=sys.stderr)
    seconds = time.time() - start
    active = figures["mu_variance"] > ACTIVE_UNIT_THRESHOLD
    print(f"PyTorch {torch.__version__} on {pixels.shape[0]} {args.split} images, K = {args.samples}, {seconds:.1f} s")
    print(f"  ELBO  {float(figures['elbo'].mean()):10.3f}  (reconstruction {float(figures['reconstruction'].mean()):.3f}, "
          f"KL {float(figures['kl'].mean()):.3f})")
    print(f"  IWAE  {float(figures['iwae'].mean()):10.3f}")
    print(f"  active units {int(active.sum())} of {evaluator.latent}")
    print("  KL per dimension: " + " ".join(f"z{j} {float(v):.4f}{'*' if active[j] else ''}"
                                             for j, v in enumerate(figures["kl_per_dim"])))


if __name__ == "__main__":
    main()
