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
  // BatchNorm's running statistics: updated in training mode (a gradient follows), read otherwise.
  T* running;
  LossSums sums{};

  const ParamLayout& layout() const { return vae.layout_; }
  T* at(int64_t offset) const { return vae.workspace_.data() + offset; }
  const ActivationLayout& act() const { return vae.act_; }
  const ModelConfig& model() const { return vae.model_; }

  // The reference has no step counter or optimizer of its own (ReferenceBackend runs Adam after
  // the gradients), so only the work of evaluation and of the gradients rides on its layers.
  // A layer is linear, then BatchNorm when it has one (into act().pre, then out), then its activation;
  // a plain ReLU stays inside linear_forward, as the CUDA kernels fuse it.
  void linear_forward(int rows, int layer, step::ForwardWork work) {
    if (work.begin_step) throw Error("reference model: no step counter to advance");
    const LinearSlot& l = vae.layout_.layers[layer];
    const LayerInput in = act().input(layer);
    T* y = at(act().out[layer]);
    ref::linear_forward(rows, l.in, l.out, l.relu, in.images ? x : at(in.x), params + l.weight_offset,
                        params + l.bias_offset, l.batch_norm ? at(act().pre[layer]) : y);
    if (l.batch_norm) batch_norm_forward(rows, layer, work.training);
    if (!l.relu && l.activation != Activation::kIdentity)
      ref::activation_forward(static_cast<int64_t>(rows) * l.out, l.activation, T(l.negative_slope), y);
    if (work.reparam)
      ref::reparam_forward(rows, act().latent, seed, stream, y, at(act().eps), at(act().z));
    if (work.loss != step::LossWork::kNone) loss(rows, layer, work.loss == step::LossWork::kSumsAndGradient);
  }
  // Training mode (step::ForwardWork::training, as on the GPU) uses and moves the batch's statistics.
  void batch_norm_forward(int rows, int layer, bool training) const {
    const LinearSlot& l = vae.layout_.layers[layer];
    if (running == nullptr) throw Error("reference model: BatchNorm layers need their running statistics");
    const T* h = at(act().pre[layer]);
    const T *gamma = params + l.bn_weight_offset, *beta = params + l.bn_bias_offset;
    if (training)
      ref::batch_norm_forward_training(rows, l.out, T(kBatchNormMomentum), T(kBatchNormEps), h, gamma, beta,
                                       at(act().out[layer]), at(act().batch_mean[layer]),
                                       at(act().batch_invstd[layer]), running + l.running_mean_offset,
                                       running + l.running_var_offset);
    else
      ref::batch_norm_forward_eval(rows, l.out, T(kBatchNormEps), h, gamma, beta, running + l.running_mean_offset,
                                   running + l.running_var_offset, at(act().out[layer]));
  }
  void loss(int rows, int layer, bool gradient) {
    T* dlogits = gradient ? at(act().grad[layer]) : nullptr;
    const T* mu_logvar = at(act().out[vae.layout_.head()]);
    const T* logits = at(act().out[layer]);
    if (model().likelihood == Likelihood::kGaussian)
      sums = ref::gaussian_kl_loss(rows, model().input, act().latent, T(model().alpha),
                                   static_cast<T>(loss_gradient_scale(model(), rows)), logits, x, mu_logvar, dlogits,
                                   vae.row_sums_.data());
    else
      sums = ref::bce_kl_loss(rows, model().input, act().latent, logits, x, mu_logvar, dlogits, vae.row_sums_.data());
  }
  void linear_backward(int rows, int layer, step::BackwardWork work) const {
    if (work.optimizer) throw Error("reference model: no optimizer in the step");
    const LinearSlot& l = vae.layout_.layers[layer];
    const LayerInput in = act().input(layer);
    T* dy = at(act().grad[layer]);
    if (!l.relu && l.activation != Activation::kIdentity)
      ref::activation_backward(static_cast<int64_t>(rows) * l.out, l.activation, T(l.negative_slope),
                               at(act().out[layer]), dy);
    if (l.batch_norm) {
      T* dh = at(act().pre_grad[layer]);
      ref::batch_norm_backward(rows, l.out, at(act().pre[layer]), params + l.bn_weight_offset,
                               at(act().batch_mean[layer]), at(act().batch_invstd[layer]), dy, dh,
                               grads + l.bn_weight_offset, grads + l.bn_bias_offset);
      dy = dh;
    }
    ref::linear_backward(rows, l.in, l.out, l.relu, in.images ? x : at(in.x), params + l.weight_offset,
                         at(act().out[layer]), dy, in.images ? nullptr : at(in.dx), grads + l.weight_offset,
                         grads + l.bias_offset);
    if (work.reparam) {
      const int head = vae.layout_.head();
      const T kl_weight = static_cast<T>(model().beta * loss_gradient_scale(model(), rows));
      ref::reparam_backward(rows, act().latent, kl_weight, at(act().out[head]), at(act().eps), at(act().dz),
                            at(act().grad[head]));
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
void ReferenceVae<T>::encode(int rows, const T* x, const T* params, const T* running_stats) {
  check_rows(rows);
  Ops ops{*this, x, 0, 0, params, nullptr, const_cast<T*>(running_stats)};  // evaluation only reads them
  step::encode(ops, rows);
}

// z is copied into the buffer the decoder reads in run(), so z() reports what was decoded.
template <typename T>
void ReferenceVae<T>::decode(int rows, const T* z, const T* params, const T* running_stats) {
  check_rows(rows);
  std::copy(z, z + static_cast<size_t>(rows) * model_.latent, workspace_.begin() + act_.z);
  Ops ops{*this, nullptr, 0, 0, params, nullptr, const_cast<T*>(running_stats)};
  step::decode(ops, rows);
}

template <typename T>
LossSums ReferenceVae<T>::run(int rows, const T* x, uint64_t seed, uint64_t stream, const T* params, T* grads,
                              T* running_stats) {
  check_rows(rows);
  Ops ops{*this, x, seed, stream, params, grads, running_stats};
  if (grads != nullptr)
    step::gradients(ops, rows);
  else
    step::evaluate(ops, rows);
  return ops.sums;
}

template class ReferenceVae<float>;
template class ReferenceVae<double>;

}  // namespace vae
