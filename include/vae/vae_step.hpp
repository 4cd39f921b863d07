// The VAE step written once, over an ops adapter that each backend supplies (the reference, CUDA,
// the benchmark's, the CPU emulation's). Its order and its one subtle rule live here and nowhere
// else: z is drawn after the head's forward and before the first decoder layer's, and dz flows back
// into the head right after the first decoder layer's backward. Which buffers a layer reads is
// ActivationLayout::input's business, inside the adapters.
#pragma once

#include "vae/layout.hpp"

namespace vae::step {

// An adapter provides, for a batch of rows images (rows at most what its buffers hold):
//   const ParamLayout& layout() const
//   void linear_forward(int rows, int layer)   the layer's output from its input
//   void reparam_forward(int rows)             ε and z from the head's mu ‖ logvar
//   void loss(int rows, bool gradient)         the BCE and KL sums; with gradient also dL/dlogits
//   void linear_backward(int rows, int layer)  its weight and bias gradients, and its input gradient
//   void reparam_backward(int rows)            dL/d(mu ‖ logvar) from dz plus beta times the KL gradient
// and, for training_step only:
//   void begin_step()                          the step count and this step's noise key
//   void optimizer_step()                      Adam over every parameter
// It may also provide `phase(Phase)`, returning a guard that lives while that phase is enqueued
// (CudaBackend's NVTX ranges); adapters without it get nothing.
enum class Phase { kForward, kLoss, kBackward, kOptimizer };

constexpr const char* name(Phase phase) {
  switch (phase) {
    case Phase::kForward: return "forward";
    case Phase::kLoss: return "loss";
    case Phase::kBackward: return "backward";
    case Phase::kOptimizer: return "optimizer";
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
  for (int i = 0; i < ops.layout().first_decoder(); ++i) ops.linear_forward(rows, i);
}

// The decoder and the output layer: z to the logits.
template <class Ops>
void decode(Ops& ops, int rows) {
  const int layers = static_cast<int>(ops.layout().layers.size());
  for (int i = ops.layout().first_decoder(); i < layers; ++i) ops.linear_forward(rows, i);
}

template <class Ops>
void forward(Ops& ops, int rows) {
  [[maybe_unused]] auto guard = detail::enter(ops, Phase::kForward);
  encode(ops, rows);
  ops.reparam_forward(rows);  // z is the first decoder layer's input
  decode(ops, rows);
}

// The chain reversed. Every layer's output gradient is complete before its backward runs.
template <class Ops>
void backward(Ops& ops, int rows) {
  [[maybe_unused]] auto guard = detail::enter(ops, Phase::kBackward);
  const ParamLayout& layout = ops.layout();
  for (int i = layout.output(); i >= layout.first_decoder(); --i) ops.linear_backward(rows, i);
  ops.reparam_backward(rows);  // dz is complete once the first decoder layer's backward has run
  for (int i = layout.head(); i >= 0; --i) ops.linear_backward(rows, i);
}

template <class Ops>
void loss(Ops& ops, int rows, bool gradient) {
  [[maybe_unused]] auto guard = detail::enter(ops, Phase::kLoss);
  ops.loss(rows, gradient);
}

// Evaluation: forward and the loss sums, no gradient. The caller keys the noise beforehand.
template <class Ops>
void evaluate(Ops& ops, int rows) {
  forward(ops, rows);
  loss(ops, rows, false);
}

// Every parameter's gradient of the summed loss, without the update.
template <class Ops>
void gradients(Ops& ops, int rows) {
  forward(ops, rows);
  loss(ops, rows, true);
  backward(ops, rows);
}

// One optimisation step: advance the step (and with it the noise), gradients, Adam.
template <class Ops>
void training_step(Ops& ops, int rows) {
  ops.begin_step();
  gradients(ops, rows);
  [[maybe_unused]] auto guard = detail::enter(ops, Phase::kOptimizer);
  ops.optimizer_step();
}

}  // namespace vae::step
