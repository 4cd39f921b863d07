// The VAE step on the reference backend, written once over the op set: forward through the encoder,
// reparameterise, decode, loss, then the same chain reversed. Activations live in buffers sized once
// for the largest batch; nothing is allocated per step.
#pragma once

#include <cstdint>
#include <vector>

#include "vae/layout.hpp"
#include "vae/reference_ops.hpp"

namespace vae {

template <typename T>
class ReferenceVae {
 public:
  ReferenceVae(const ModelConfig& model, int max_rows);

  const ParamLayout& layout() const { return layout_; }
  const ModelConfig& model() const { return model_; }
  int max_rows() const { return max_rows_; }

  // Forward and loss for rows images x [rows, input] in [0, 1], which are also the targets; ε is
  // keyed by (seed, stream). When grads is not null, also backward: grads receives dL/dparams of the
  // summed loss bce + beta * kl (every tensor overwritten, padding untouched).
  ref::LossSums run(int rows, const T* x, uint64_t seed, uint64_t stream, const T* params, T* grads);

  // The two halves of run()'s forward pass, for images and inspection. encode runs the encoder and
  // the head on x [rows, input], leaving mu ‖ logvar in mu_logvar(); decode runs the decoder and the
  // output layer on the caller's z [rows, latent], leaving the logits in logits(). Neither draws noise.
  void encode(int rows, const T* x, const T* params);
  void decode(int rows, const T* z, const T* params);

  // Outputs of the last run, encode or decode.
  const T* logits() const { return activations_.back().data(); }
  const T* mu_logvar() const { return activations_[layout_.head()].data(); }
  const T* z() const { return z_.data(); }

 private:
  const T* layer_input(int layer, const T* x) const;
  // Forward through layers [first, last): the one loop that run, encode and decode share.
  void forward_layers(int rows, int first, int last, const T* x, const T* params);
  void check_rows(int rows) const;
  T* layer_input_grad(int layer);

  ModelConfig model_;
  ParamLayout layout_;
  int max_rows_;
  std::vector<std::vector<T>> activations_;  // each layer's output [rows, out]
  std::vector<std::vector<T>> grads_;        // dL/d(each layer's output)
  std::vector<T> eps_, z_, dz_;
  std::vector<double> row_sums_;  // bce_kl_loss's per-row sums
};

extern template class ReferenceVae<float>;
extern template class ReferenceVae<double>;

// PyTorch's nn.Linear initialisation, weights and biases uniform in ±1/sqrt(fan_in), drawn from
// Philox keyed by seed so that a run is reproducible from its seed alone.
template <typename T>
void init_params(const ParamLayout& layout, uint64_t seed, T* params);

}  // namespace vae
