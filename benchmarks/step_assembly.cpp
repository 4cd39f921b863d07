// The step's buffers, its four linear-layer chains and the steps built on them.
#include "step_assembly.hpp"

#include <algorithm>

#include "baseline_cublas.hpp"
#include "harness.hpp"
#include "vae/cuda_check.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/gemm_plan.hpp"
#include "vae/vae_step.hpp"

#if VAE_BENCH_HAVE_CUDNN
#include "baseline_cudnn.hpp"
#endif

namespace vae::bench {

StepState::StepState(const ParamLayout& layout, int rows, int sm_count)
    : layout(layout), rows(rows), act_layout(make_activation_layout(layout, rows)) {
  std::vector<float> host(static_cast<size_t>(layout.total), 0.0f);
  init_params(layout, 1, host.data());
  initial = host;
  for (auto* buffer : {&params, &grads, &m, &v}) *buffer = DeviceBuffer<float>(host.size());
  activations = DeviceBuffer<float>(static_cast<size_t>(act_layout.total));
  activations.zero();  // padding stays defined, as CudaBackend's
  cuda::GemmWorkspaceSize gemm{1, 1};
  for (Precision p : {Precision::kFp32, Precision::kTf32}) gemm.cover(cuda::model_workspace_size(layout, rows, p, sm_count));
  int widest = 0;
  for (const LinearSlot& l : layout.layers) {
    widest = std::max(widest, l.out);
    masks.emplace_back(cublaslt::mask_bytes(rows, l.out));
  }
  pixels = random_pixels(static_cast<size_t>(rows) * layout.layers[0].in, 31);
  pixels_float = DeviceBuffer<float>(pixels.size());
  dy_masked = DeviceBuffer<float>(static_cast<size_t>(rows) * widest);
  gemm_workspace = DeviceBuffer<float>(static_cast<size_t>(gemm.floats));
  gemm_counters_buffer = DeviceBuffer<unsigned>(static_cast<size_t>(gemm.counters));
  gemm_counters_buffer.zero();
  reset();
}

void StepState::reset() {
  VAE_CUDA_CHECK(cudaDeviceSynchronize());
  params.upload(initial);
  for (auto* buffer : {&grads, &m, &v}) buffer->zero();
  step.zero();
  noise_stream.zero();
  totals.zero();
  first_bad_step.zero();
  // Uploads and memsets run on the default stream, which the harness stream does not wait for.
  VAE_CUDA_CHECK(cudaDeviceSynchronize());
}

cuda::StepOps StepState::ops(Precision precision, cudaStream_t stream) {
  const ModelConfig model;  // the benchmark's model, seed 1 and Adam's defaults
  return cuda::StepOps{
      .param_layout = &layout,
      .act_layout = &act_layout,
      .params = params.data(),
      .grads = grads.data(),
      .adam_m = m.data(),
      .adam_v = v.data(),
      .activations = activations.data(),
      .gemm = {gemm_workspace.data(), static_cast<int64_t>(gemm_workspace.size()), gemm_counters_buffer.data(),
               static_cast<int64_t>(gemm_counters_buffer.size())},
      .loss_scratch = loss_scratch.data(),
      .totals = totals.data(),
      .step = step.data(),
      .adam_coefficients = adam_coefficients.data(),
      .first_bad_step = first_bad_step.data(),
      .noise_stream = noise_stream.data(),
      .pixels = pixels.data(),
      .precision = precision,
      .seed = 1,
      .beta = model.beta,
      .adam = AdamHyper{},
      .stream = stream,
  };
}

namespace {

// Our layers are the CUDA adapter's own. Fused, the step is CudaBackend's (the rest of the step in
// the layers' epilogues); unfused, it is assembled as the libraries' are, which measures the fusion.
class OursChain : public LinearChain {
 public:
  OursChain(Precision precision, bool fused) : precision_(precision), fused_(fused) {}
  void forward(StepState& s, int i, cudaStream_t stream) override {
    s.ops(precision_, stream).linear_forward(s.rows, i, {});
  }
  void backward(StepState& s, int i, cudaStream_t stream) override {
    s.ops(precision_, stream).linear_backward(s.rows, i, {});
  }
  void enqueue_step(StepState& s, cudaStream_t stream) override {
    if (!fused_) return LinearChain::enqueue_step(s, stream);
    cuda::StepOps ops = s.ops(precision_, stream);
    step::training_step(ops, s.rows);
  }

 private:
  Precision precision_;
  bool fused_;
};

// The library chains read float inputs: the first layer converts the pixels first (and its
// backward reuses them).
const float* library_input(StepState& s, int i, cudaStream_t stream) {
  if (i == 0)
    cublas::pixels_to_float(static_cast<int64_t>(s.rows) * s.layout.layers[0].in, s.pixels.data(),
                            s.pixels_float.data(), stream);
  return s.input(i);
}

class CublasChain : public LinearChain {
 public:
  CublasChain(cublasHandle_t blas, Precision precision) : blas_(blas), precision_(precision) {}
  void forward(StepState& s, int i, cudaStream_t stream) override {
    const LinearSlot& l = s.layout.layers[i];
    cublas::linear_forward(blas_, s.rows, l.in, l.out, l.relu, library_input(s, i, stream), s.weight(i), s.bias(i),
                           s.out(i), precision_, stream);
  }
  void backward(StepState& s, int i, cudaStream_t stream) override {
    const LinearSlot& l = s.layout.layers[i];
    cublas::linear_backward(blas_, s.rows, l.in, l.out, l.relu, s.input(i), s.weight(i), s.out(i), s.grad(i),
                            s.dy_masked.data(), s.input_grad(i), s.dweight(i), s.dbias(i), precision_, stream);
  }

 private:
  cublasHandle_t blas_;
  Precision precision_;
};

// cuBLASLt's chain: each relu layer's mask and bias gradient are applied by the next layer's dx
// GEMM (DRELU_BGRAD), so grad[i] of a relu layer arrives masked (see baseline_cublaslt.hpp).
class CublasLtChain : public LinearChain {
 public:
  CublasLtChain(const StepState& s, cublasLtHandle_t lt, Precision precision, cublaslt::Workspace workspace) {
    for (size_t i = 0; i < s.layout.layers.size(); ++i) {
      const LinearSlot& l = s.layout.layers[i];
      layers_.push_back(std::make_unique<cublaslt::Linear>(lt, s.rows, l.in, l.out, l.relu, below_relu(s, i), i > 0,
                                                           precision, workspace));
    }
  }
  void forward(StepState& s, int i, cudaStream_t stream) override {
    layers_[i]->forward(library_input(s, i, stream), s.weight(i), s.bias(i), s.out(i), s.masks[i].data(), stream);
  }
  void backward(StepState& s, int i, cudaStream_t stream) override {
    const bool below = below_relu(s, i);
    layers_[i]->backward(s.input(i), s.weight(i), s.grad(i), below ? s.masks[i - 1].data() : nullptr, s.input_grad(i),
                         s.dweight(i), s.dbias(i), below ? s.dbias(i - 1) : nullptr, stream);
  }

 private:
  static bool below_relu(const StepState& s, size_t i) {
    return i > 0 && static_cast<int>(i) != s.layout.first_decoder() && s.layout.layers[i - 1].relu;
  }
  std::vector<std::unique_ptr<cublaslt::Linear>> layers_;
};

#if VAE_BENCH_HAVE_CUDNN
class CudnnChain : public LinearChain {
 public:
  CudnnChain(const StepState& s, cudnnHandle_t dnn, cublasHandle_t blas, Precision precision) {
    for (const LinearSlot& l : s.layout.layers)
      layers_.push_back(std::make_unique<cudnn::Linear>(dnn, blas, s.rows, l.in, l.out, l.relu, precision));
  }
  void forward(StepState& s, int i, cudaStream_t stream) override {
    layers_[i]->forward(library_input(s, i, stream), s.weight(i), s.bias(i), s.out(i), stream);
  }
  void backward(StepState& s, int i, cudaStream_t stream) override {
    layers_[i]->backward(s.input(i), s.weight(i), s.out(i), s.grad(i), s.dy_masked.data(), s.input_grad(i),
                         s.dweight(i), s.dbias(i), stream);
  }

 private:
  std::vector<std::unique_ptr<cudnn::Linear>> layers_;
};
#endif

}  // namespace

std::unique_ptr<LinearChain> ours_chain(Precision precision, bool fused) {
  return std::make_unique<OursChain>(precision, fused);
}

std::unique_ptr<LinearChain> cublas_chain(cublasHandle_t blas, Precision precision) {
  return std::make_unique<CublasChain>(blas, precision);
}

std::unique_ptr<LinearChain> cublaslt_chain(const StepState& s, cublasLtHandle_t lt, Precision precision,
                                            cublaslt::Workspace workspace) {
  return std::make_unique<CublasLtChain>(s, lt, precision, workspace);
}

#if VAE_BENCH_HAVE_CUDNN
std::unique_ptr<LinearChain> cudnn_chain(const StepState& s, cudnnHandle_t dnn, cublasHandle_t blas,
                                         Precision precision) {
  return std::make_unique<CudnnChain>(s, dnn, blas, precision);
}
#endif

namespace {

// The CUDA adapter with the linear layers from a chain and each epilogue of the fused step done by
// our standalone kernel for it, one launch each, on the same buffers.
struct ChainOps : cuda::StepOps {
  StepState* state;
  LinearChain* chain;

  void linear_forward(int rows, int layer, step::ForwardWork work) const {
    if (work.begin_step) cuda::advance_step(step, noise_stream, stream);
    chain->forward(*state, layer, stream);
    const int head = param_layout->head();
    if (work.reparam)
      cuda::reparam_forward(rows, act_layout->latent, seed, noise_stream, at(act_layout->out[head]),
                            at(act_layout->eps), at(act_layout->z), stream);
    if (work.loss != step::LossWork::kNone) {
      // The NaN guard rides on the training loss (first_bad_step set), as in StepOps.
      const cuda::NonfiniteGuard guard =
          first_bad_step != nullptr ? cuda::NonfiniteGuard{step, first_bad_step} : cuda::NonfiniteGuard{};
      // bce_kl_loss's 2 * rows of row sums fit in the fused loss's scratch.
      cuda::bce_kl_loss(rows, param_layout->layers[0].in, act_layout->latent, at(act_layout->out[layer]), pixels,
                        at(act_layout->out[head]),
                        work.loss == step::LossWork::kSumsAndGradient ? at(act_layout->grad[layer]) : nullptr,
                        loss_scratch, totals, guard, stream);
    }
  }

  void linear_backward(int rows, int layer, step::BackwardWork work) const {
    chain->backward(*state, layer, stream);
    if (work.reparam) {
      const int head = param_layout->head();
      cuda::reparam_backward(rows, act_layout->latent, beta, at(act_layout->out[head]), at(act_layout->eps),
                             at(act_layout->dz), at(act_layout->grad[head]), stream);
    }
    // Layer 0's backward is the last: then every gradient is complete and one Adam launch over the
    // flat buffers does per element what the fused step's per-layer updates do.
    if (work.optimizer && layer == 0)
      cuda::adam_step(param_layout->total, adam, step, grads, params, adam_m, adam_v, stream);
  }
};

}  // namespace

void LinearChain::enqueue_step(StepState& s, cudaStream_t stream) {
  // The precision is only that of our linear layers, which the chain replaces.
  ChainOps ops{s.ops(Precision::kFp32, stream), &s, this};
  step::training_step(ops, s.rows);
}

}  // namespace vae::bench
