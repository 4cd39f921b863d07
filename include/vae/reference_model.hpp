// The VAE model on the reference backend: the step of vae_step.hpp over the reference ops. Activations
// live in one workspace laid out by ActivationLayout and sized once for the largest batch; nothing is
// allocated per step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

#include "vae/activation_layout.hpp"
#include "vae/layout.hpp"
#include "vae/reference_ops.hpp"
#include "vae/training_state.hpp"

namespace vae {

// Allocates on 256-byte boundaries, as cudaMalloc does, so that with ActivationLayout's offsets every
// buffer starts on a cache line: the reference GEMMs' 64-byte loads run measurably slower (about 6%
// per epoch) when they straddle lines.
template <typename T>
struct WorkspaceAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlignment{256};
  WorkspaceAllocator() = default;
  template <typename U>
  WorkspaceAllocator(const WorkspaceAllocator<U>&) {}  // allocators convert implicitly
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlignment)); }
  void deallocate(T* p, size_t) { ::operator delete(p, kAlignment); }
  bool operator==(const WorkspaceAllocator&) const = default;
};

template <typename T>
class ReferenceVae {
 public:
  ReferenceVae(const ModelConfig& model, int max_rows);

  const ParamLayout& layout() const { return layout_; }
  const ModelConfig& model() const { return model_; }
  int max_rows() const { return max_rows_; }

  // Forward and loss for rows images x [rows, input] (on [0, 1] for the Bernoulli likelihood, [-1, 1]
  // for the Gaussian), which are also the targets; ε is keyed by (seed, stream). When grads is not
  // null, the model is in training mode and also runs backward: grads receives dL/dparams of the
  // loss, reconstruction + beta * kl summed over the batch (times loss_gradient_scale), every tensor
  // overwritten, padding untouched. running_stats [layout().running_total] is BatchNorm's: updated in
  // training mode, used in evaluation (without grads); it may be null for a model without BatchNorm,
  // and is a vae::Error otherwise.
  LossSums run(int rows, const T* x, uint64_t seed, uint64_t stream, const T* params, T* grads,
               T* running_stats = nullptr);

  // The two halves of run()'s forward pass in evaluation mode, for images and inspection. encode
  // runs the encoder and the head on x [rows, input], leaving mu ‖ logvar in mu_logvar(); decode
  // runs the decoder and the output layer on the caller's z [rows, latent], leaving the output
  // layer's pre-activations in logits(). Neither draws noise.
  void encode(int rows, const T* x, const T* params, const T* running_stats = nullptr);
  void decode(int rows, const T* z, const T* params, const T* running_stats = nullptr);

  // Outputs of the last run, encode or decode.
  const T* logits() const { return at(act_.out[layout_.output()]); }
  const T* mu_logvar() const { return at(act_.out[layout_.head()]); }
  const T* z() const { return at(act_.z); }

 private:
  struct Ops;  // vae_step.hpp's adapter: the reference ops on this model's workspace
  const T* at(int64_t offset) const { return workspace_.data() + offset; }
  void check_rows(int rows) const;

  ModelConfig model_;
  ParamLayout layout_;
  int max_rows_;
  ActivationLayout act_;
  std::vector<T, WorkspaceAllocator<T>> workspace_;  // [act_.total]
  std::vector<double> row_sums_;  // bce_kl_loss's per-row sums
};

extern template class ReferenceVae<float>;
extern template class ReferenceVae<double>;

}  // namespace vae
