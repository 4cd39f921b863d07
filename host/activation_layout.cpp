// Builds the activation workspace's layout from the parameter layout and the batch size, in the
// order CudaBackend has always used: per layer output then gradient, then ε, z, dz.
#include "vae/activation_layout.hpp"

#include <fmt/format.h>

#include "vae/error.hpp"

namespace vae {
namespace {

int64_t align_up(int64_t n) { return (n + kActivationAlignment - 1) / kActivationAlignment * kActivationAlignment; }

}  // namespace

ActivationLayout make_activation_layout(const ParamLayout& layout, int rows) {
  if (rows < 0) throw Error(fmt::format("activation layout: {} rows", rows));
  ActivationLayout act;
  act.rows = rows;
  act.latent = layout.layers[layout.first_decoder()].in;
  act.first_decoder = layout.first_decoder();
  auto take = [&](int width) {
    const int64_t offset = act.total;
    act.total += align_up(static_cast<int64_t>(rows) * width);
    return offset;
  };
  for (const LinearSlot& l : layout.layers) {
    act.out.push_back(take(l.out));
    act.grad.push_back(take(l.out));
  }
  act.eps = take(act.latent);
  act.z = take(act.latent);
  act.dz = take(act.latent);
  for (const LinearSlot& l : layout.layers) {
    const bool bn = l.batch_norm;
    act.pre.push_back(bn ? take(l.out) : -1);
    act.pre_grad.push_back(bn ? take(l.out) : -1);
    // One row each, whatever the batch.
    act.batch_mean.push_back(bn ? act.total : -1);
    if (bn) act.total += align_up(l.out);
    act.batch_invstd.push_back(bn ? act.total : -1);
    if (bn) act.total += align_up(l.out);
  }
  return act;
}

}  // namespace vae
