// ReferenceVae: wires the reference ops into the VAE's forward and backward pass.
#include "vae/reference_model.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "vae/error.hpp"
#include "vae/noise_streams.hpp"
#include "vae/philox.hpp"

namespace vae {

template <typename T>
ReferenceVae<T>::ReferenceVae(const ModelConfig& model, int max_rows)
    : model_(model), layout_(make_layout(model)), max_rows_(max_rows) {
  for (const LinearSlot& layer : layout_.layers) {
    activations_.emplace_back(static_cast<size_t>(max_rows) * layer.out);
    grads_.emplace_back(static_cast<size_t>(max_rows) * layer.out);
  }
  const size_t latent_size = static_cast<size_t>(max_rows) * model.latent;
  eps_.resize(latent_size);
  z_.resize(latent_size);
  dz_.resize(latent_size);
  row_sums_.resize(2 * static_cast<size_t>(max_rows));
}

// The encoder starts from the images, the decoder from z; every other layer from its predecessor.
template <typename T>
const T* ReferenceVae<T>::layer_input(int layer, const T* x) const {
  if (layer == 0) return x;
  if (layer == layout_.first_decoder()) return z_.data();
  return activations_[layer - 1].data();
}

template <typename T>
T* ReferenceVae<T>::layer_input_grad(int layer) {
  if (layer == 0) return nullptr;  // nobody needs dL/dx
  if (layer == layout_.first_decoder()) return dz_.data();
  return grads_[layer - 1].data();
}

template <typename T>
void ReferenceVae<T>::check_rows(int rows) const {
  if (rows < 0 || rows > max_rows_)
    throw Error(fmt::format("reference model: {} rows requested, buffers hold {}", rows, max_rows_));
}

template <typename T>
void ReferenceVae<T>::forward_layers(int rows, int first, int last, const T* x, const T* params) {
  for (int i = first; i < last; ++i) {
    const LinearSlot& l = layout_.layers[i];
    ref::linear_forward(rows, l.in, l.out, l.relu, layer_input(i, x), params + l.weight_offset,
                        params + l.bias_offset, activations_[i].data());
  }
}

template <typename T>
void ReferenceVae<T>::encode(int rows, const T* x, const T* params) {
  check_rows(rows);
  forward_layers(rows, 0, layout_.first_decoder(), x, params);
}

// z is copied into the buffer the decoder reads in run(), so z() reports what was decoded.
template <typename T>
void ReferenceVae<T>::decode(int rows, const T* z, const T* params) {
  check_rows(rows);
  std::copy(z, z + static_cast<size_t>(rows) * model_.latent, z_.begin());
  forward_layers(rows, layout_.first_decoder(), static_cast<int>(layout_.layers.size()), nullptr, params);
}

template <typename T>
ref::LossSums ReferenceVae<T>::run(int rows, const T* x, uint64_t seed, uint64_t stream, const T* params,
                                   T* grads) {
  check_rows(rows);
  const int n_layers = static_cast<int>(layout_.layers.size());
  const int head = layout_.head();
  forward_layers(rows, 0, layout_.first_decoder(), x, params);
  ref::reparam_forward(rows, model_.latent, seed, stream, activations_[head].data(), eps_.data(), z_.data());
  forward_layers(rows, layout_.first_decoder(), n_layers, x, params);
  const int out = layout_.output();
  T* dlogits = grads != nullptr ? grads_[out].data() : nullptr;
  const ref::LossSums loss =
      ref::bce_kl_loss(rows, model_.input, model_.latent, activations_[out].data(), x, activations_[head].data(),
                       dlogits, row_sums_.data());
  if (grads == nullptr) return loss;

  for (int i = n_layers - 1; i >= 0; --i) {
    const LinearSlot& l = layout_.layers[i];
    ref::linear_backward(rows, l.in, l.out, l.relu, layer_input(i, x), params + l.weight_offset,
                         activations_[i].data(), grads_[i].data(), layer_input_grad(i), grads + l.weight_offset,
                         grads + l.bias_offset);
    if (i == layout_.first_decoder())
      ref::reparam_backward(rows, model_.latent, static_cast<T>(model_.beta), activations_[head].data(),
                            eps_.data(), dz_.data(), grads_[head].data());
  }
  return loss;
}

template <typename T>
void init_params(const ParamLayout& layout, uint64_t seed, T* params) {
  uint64_t tensor = 0;
  // One Philox stream per tensor: adding a layer never changes the draws of the others.
  auto fill_uniform = [&](T* dst, int64_t count, double bound) {
    const uint64_t stream = noise_stream(NoisePurpose::kInit, tensor++);
    for (int64_t group = 0; group * 4 < count; ++group) {
      const Philox4 bits = philox_bits(seed, stream, static_cast<uint64_t>(group));
      for (int lane = 0; lane < 4 && group * 4 + lane < count; ++lane)
        dst[group * 4 + lane] = static_cast<T>((2.0 * uniform_from_bits(bits.v[lane]) - 1.0) * bound);
    }
  };
  for (const LinearSlot& l : layout.layers) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(l.in));
    fill_uniform(params + l.weight_offset, static_cast<int64_t>(l.in) * l.out, bound);
    fill_uniform(params + l.bias_offset, l.out, bound);
  }
}

template class ReferenceVae<float>;
template class ReferenceVae<double>;
template void init_params<float>(const ParamLayout&, uint64_t, float*);
template void init_params<double>(const ParamLayout&, uint64_t, double*);

}  // namespace vae
