// ReferenceVae: the step of vae_step.hpp over the reference ops, on one workspace laid out by
// ActivationLayout.
#include "vae/reference_model.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "vae/error.hpp"
#include "vae/vae_step.hpp"

namespace vae {

// Each op on the model's buffers; ActivationLayout::input says which of them a layer reads.
template <typename T>
struct ReferenceVae<T>::Ops {
  ReferenceVae& vae;
  const T* x;  // the images [rows, input], also the targets; null for decode, which never reads them
  uint64_t seed, stream;  // ε's Philox key
  const T* params;
  T* grads;  // dL/dparams; null when there is no backward
  LossSums sums{};

  const ParamLayout& layout() const { return vae.layout_; }
  T* at(int64_t offset) const { return vae.workspace_.data() + offset; }
  const ActivationLayout& act() const { return vae.act_; }

  // The reference has no step counter or optimizer of its own (ReferenceBackend runs Adam after
  // the gradients), so only the work of evaluation and of the gradients rides on its layers.
  void linear_forward(int rows, int layer, step::ForwardWork work) {
    if (work.begin_step) throw Error("reference model: no step counter to advance");
    const LinearSlot& l = vae.layout_.layers[layer];
    const LayerInput in = act().input(layer);
    ref::linear_forward(rows, l.in, l.out, l.relu, in.images ? x : at(in.x), params + l.weight_offset,
                        params + l.bias_offset, at(act().out[layer]));
    if (work.reparam)
      ref::reparam_forward(rows, act().latent, seed, stream, at(act().out[layer]), at(act().eps), at(act().z));
    if (work.loss != step::LossWork::kNone) {
      const bool gradient = work.loss == step::LossWork::kSumsAndGradient;
      sums = ref::bce_kl_loss(rows, vae.model_.input, act().latent, at(act().out[layer]), x,
                              at(act().out[vae.layout_.head()]), gradient ? at(act().grad[layer]) : nullptr,
                              vae.row_sums_.data());
    }
  }
  void linear_backward(int rows, int layer, step::BackwardWork work) const {
    if (work.optimizer) throw Error("reference model: no optimizer in the step");
    const LinearSlot& l = vae.layout_.layers[layer];
    const LayerInput in = act().input(layer);
    ref::linear_backward(rows, l.in, l.out, l.relu, in.images ? x : at(in.x), params + l.weight_offset,
                         at(act().out[layer]), at(act().grad[layer]), in.images ? nullptr : at(in.dx),
                         grads + l.weight_offset, grads + l.bias_offset);
    if (work.reparam) {
      const int head = vae.layout_.head();
      ref::reparam_backward(rows, act().latent, static_cast<T>(vae.model_.beta), at(act().out[head]), at(act().eps),
                            at(act().dz), at(act().grad[head]));
    }
  }
};

template <typename T>
ReferenceVae<T>::ReferenceVae(const ModelConfig& model, int max_rows)
    : model_(model),
      layout_(make_layout(model)),
      max_rows_(max_rows),
      act_(make_activation_layout(layout_, max_rows)),
      workspace_(static_cast<size_t>(act_.total)),
      row_sums_(2 * static_cast<size_t>(max_rows)) {}

template <typename T>
void ReferenceVae<T>::check_rows(int rows) const {
  if (rows < 0 || rows > max_rows_)
    throw Error(fmt::format("reference model: {} rows requested, buffers hold {}", rows, max_rows_));
}

template <typename T>
void ReferenceVae<T>::encode(int rows, const T* x, const T* params) {
  check_rows(rows);
  Ops ops{*this, x, 0, 0, params, nullptr};
  step::encode(ops, rows);
}

// z is copied into the buffer the decoder reads in run(), so z() reports what was decoded.
template <typename T>
void ReferenceVae<T>::decode(int rows, const T* z, const T* params) {
  check_rows(rows);
  std::copy(z, z + static_cast<size_t>(rows) * model_.latent, workspace_.begin() + act_.z);
  Ops ops{*this, nullptr, 0, 0, params, nullptr};
  step::decode(ops, rows);
}

template <typename T>
LossSums ReferenceVae<T>::run(int rows, const T* x, uint64_t seed, uint64_t stream, const T* params, T* grads) {
  check_rows(rows);
  Ops ops{*this, x, seed, stream, params, grads};
  if (grads != nullptr)
    step::gradients(ops, rows);
  else
    step::evaluate(ops, rows);
  return ops.sums;
}

template class ReferenceVae<float>;
template class ReferenceVae<double>;

}  // namespace vae
