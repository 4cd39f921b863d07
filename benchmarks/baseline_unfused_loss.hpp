// Baseline for the loss: BCE-with-logits + KL as an unfused chain of kernels, each a full pass over
// memory, the way an eager framework evaluates the expression -- against our one fused launch
// pair. Same arguments as vae::cuda::bce_kl_loss, with float scratch in place of its row sums.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace vae::bench::unfused {

// Scratch for the chain's intermediates: sigmoid(logits) and the per-pixel BCE [rows x pixels]
// each, and the per-latent KL terms [rows x latent].
int64_t loss_scratch_floats(int rows, int pixels, int latent);

// sigmoid -> per-pixel BCE -> sum -> per-latent KL -> sum -> dlogits = sigmoid - target:
// six launches. Adds the sums to totals[0] (BCE) and totals[1] (KL), as ours does.
void bce_kl_loss(int rows, int pixels, int latent, const float* logits, const uint8_t* target,
                 const float* mu_logvar, float* dlogits, float* scratch, double* totals, cudaStream_t stream);

}  // namespace vae::bench::unfused
