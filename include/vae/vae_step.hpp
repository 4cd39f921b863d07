// The VAE step written once, over an ops adapter that each backend supplies (the reference, CUDA,
// the benchmark's, the CPU emulation's), as one forward and one backward op per linear layer with
// the rest of the step riding on them. Its order and its one subtle rule live here and nowhere
// else: z is drawn after the head's forward and before the first decoder layer's, and dz flows back
// into the head right after the first decoder layer's backward. Which buffers a layer reads is
// ActivationLayout::input's business, inside the adapters.
#pragma once

#include "vae/layout.hpp"

namespace vae::step {

// What rides on a layer's forward besides the layer itself. A GPU adapter does it in the same
// launch (as epilogues); the reference does it right after the layer.
enum class LossWork { kNone, kSums, kSumsAndGradient };
struct ForwardWork {
  bool begin_step = false;  // first: advance the step count and this step's noise key
  bool reparam = false;     // after the head: ε and z from its mu ‖ logvar
  LossWork loss = LossWork::kNone;  // after the output layer: the BCE and KL sums, and dL/dlogits
  // Training mode (a backward follows): BatchNorm normalises by the batch's statistics and moves its
  // running statistics; otherwise (evaluation, encode, decode) it uses the running statistics.
  bool training = false;
};
// What rides on a layer's backward besides its weight, bias and input gradients.
struct BackwardWork {
  bool reparam = false;    // the first decoder layer: its input gradient is dz; then dL/d(mu ‖ logvar)
                           // from dz plus beta times the KL gradient
  bool optimizer = false;  // Adam on this layer's weight and bias
};

// An adapter provides, for a batch of rows images (rows at most what its buffers hold):
//   const ParamLayout& layout() const
//   void linear_forward(int rows, int layer, ForwardWork)    the layer's output from its input
//   void linear_backward(int rows, int layer, BackwardWork)  its gradients from its output gradient
// A layer is its linear part, its BatchNorm when it has one, and its activation: both ops cover all
// three (the CUDA adapter launches BatchNorm's backward as a second kernel inside linear_backward).
// It may also provide `phase(Phase)`, returning a guard that lives while that phase is enqueued
// (CudaBackend's NVTX ranges); adapters without it get nothing.
enum class Phase { kForward, kBackward };

constexpr const char* name(Phase phase) {
  switch (phase) {
    case Phase::kForward: return "forward";
    case Phase::kBackward: return "backward";
  }
  return "";
}

namespace detail {
struct NoGuard {};
template <class Ops>
auto enter(Ops& ops, Phase phase) {
  if constexpr (requires { ops.phase(phase); })
    return ops.phase(phase);
  else
    return NoGuard{};
}
}  // namespace detail

// The encoder and the head: images to mu ‖ logvar.
template <class Ops>
void encode(Ops& ops, int rows) {
  for (int i = 0; i < ops.layout().first_decoder(); ++i) ops.linear_forward(rows, i, ForwardWork{});
}

// The decoder and the output layer: z to the logits, and with loss the loss's work on the output
// layer (importance sampling's per-row reconstruction sums).
template <class Ops>
void decode(Ops& ops, int rows, LossWork loss = LossWork::kNone) {
  const ParamLayout& layout = ops.layout();
  for (int i = layout.first_decoder(); i <= layout.output(); ++i)
    ops.linear_forward(rows, i, ForwardWork{.loss = i == layout.output() ? loss : LossWork::kNone});
}

// Images to the loss: z is drawn after the head, the first decoder layer's input.
template <class Ops>
void forward(Ops& ops, int rows, LossWork loss, bool begin_step) {
  [[maybe_unused]] auto guard = detail::enter(ops, Phase::kForward);
  const ParamLayout& layout = ops.layout();
  for (int i = 0; i <= layout.output(); ++i)
    ops.linear_forward(rows, i,
                       ForwardWork{begin_step && i == 0, i == layout.head(), i == layout.output() ? loss : LossWork::kNone,
                                   loss == LossWork::kSumsAndGradient});
}

// The chain reversed. Every layer's output gradient is complete before its backward runs: dz once
// the first decoder layer's backward has run, and d(mu ‖ logvar) with it.
template <class Ops>
void backward(Ops& ops, int rows, bool optimizer) {
  [[maybe_unused]] auto guard = detail::enter(ops, Phase::kBackward);
  const ParamLayout& layout = ops.layout();
  for (int i = layout.output(); i >= 0; --i)
    ops.linear_backward(rows, i, BackwardWork{i == layout.first_decoder(), optimizer});
}

// Evaluation: forward and the loss sums, no gradient. The caller keys the noise beforehand.
template <class Ops>
void evaluate(Ops& ops, int rows) {
  forward(ops, rows, LossWork::kSums, false);
}

// Every parameter's gradient of the summed loss, without the update. The caller keys the noise.
template <class Ops>
void gradients(Ops& ops, int rows) {
  forward(ops, rows, LossWork::kSumsAndGradient, false);
  backward(ops, rows, false);
}

// One optimisation step: advance the step (and with it the noise), gradients, Adam.
template <class Ops>
void training_step(Ops& ops, int rows) {
  forward(ops, rows, LossWork::kSumsAndGradient, true);
  backward(ops, rows, true);
}

}  // namespace vae::step
