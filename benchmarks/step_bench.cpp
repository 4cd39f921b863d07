// Whole training steps of the default model (step_assembly.hpp): ours fused, one forward and one
// backward launch per layer (8 for the default model), against each library's linear layers
// assembled with our standalone kernels into the unfused step (and our own layers so assembled, to
// measure what the fusion gains). Each is timed as a replayed CUDA graph and as plain launches on
// one device-resident batch, L2 not flushed (a step finds what the previous one left). Every assembly's gradients after one step from the same state are compared
// with ours', a check of its whole backward chain.
#include <fmt/format.h>

#include <cmath>
#include <string>
#include <vector>

#include "benches.hpp"
#include "step_assembly.hpp"

namespace vae::bench {
namespace {

// The step's compulsory work: every layer forward and backward, the loss, Adam.
OpCost step_cost(const ParamLayout& layout, int rows) {
  OpCost total;
  for (size_t i = 0; i < layout.layers.size(); ++i) {
    const LinearSlot& l = layout.layers[i];
    for (const OpCost& c : {linear_forward_cost(rows, l.in, l.out, i == 0),
                            linear_backward_cost(rows, l.in, l.out, l.relu, i == 0)}) {
      total.flops += c.flops;
      total.bytes += c.bytes;
    }
  }
  const ModelConfig model;
  for (const OpCost& c : {bce_kl_cost(rows, model.input, model.latent), adam_cost(layout.parameter_count())}) {
    total.flops += c.flops;
    total.bytes += c.bytes;
  }
  return total;
}

// Times one chain's step as plain launches and as a replayed graph; returns its gradients after
// one step from the reset state.
std::vector<float> bench_chain(Harness& h, StepState& s, LinearChain& chain, const std::string& impl,
                               Precision precision) {
  const cudaStream_t stream = h.stream();
  s.reset();
  chain.enqueue_step(s, stream);  // also the first run, where cuBLASLt picks its algorithms
  VAE_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<float> grads = s.grads.download();

  const OpCost cost = step_cost(s.layout, s.rows);
  const std::string batch = fmt::format("batch {}", s.rows);
  h.time({"step", "train step", batch + ", plain launches", impl, precision}, [&] { chain.enqueue_step(s, stream); },
         cost, /*flush_l2=*/false);

  cudaGraph_t graph = nullptr;
  VAE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
  try {
    chain.enqueue_step(s, stream);
  } catch (...) {
    cudaStreamEndCapture(stream, &graph);
    if (graph != nullptr) cudaGraphDestroy(graph);
    throw;
  }
  VAE_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  VAE_CUDA_CHECK(status);
  try {
    h.time({"step", "train step", batch + ", graph replay", impl, precision},
           [&] { VAE_CUDA_CHECK(cudaGraphLaunch(exec, stream)); }, cost, /*flush_l2=*/false);
  } catch (...) {
    cudaGraphExecDestroy(exec);
    throw;
  }
  VAE_CUDA_CHECK(cudaStreamSynchronize(stream));
  cudaGraphExecDestroy(exec);
  return grads;
}

double largest_relative_gap(const std::vector<float>& a, const std::vector<float>& b) {
  double largest = 0, difference = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return std::nan("");
    largest = std::max(largest, static_cast<double>(std::fabs(b[i])));
    difference = std::max(difference, static_cast<double>(std::fabs(a[i] - b[i])));
  }
  return largest > 0 ? difference / largest : difference;
}

}  // namespace

void bench_steps(Harness& h, int rows) {
  StepState s(make_layout(ModelConfig{}), rows, h.device().sm_count);
  for (Precision precision : {Precision::kFp32, Precision::kTf32}) {
    const std::vector<float> reference = bench_chain(h, s, *ours_chain(precision), "ours", precision);
    // Both timings of a chain carry its gradients' largest difference from ours.
    const auto compare = [&](const std::vector<float>& grads) {
      const double difference = largest_relative_gap(grads, reference);
      h.results()[h.results().size() - 2].extra["max_rel_diff"] = difference;  // the plain-launch row
      h.record_difference(difference);                                        // the graph row
    };
    h.attempt(fmt::format("ours unfused step, batch {}", rows), [&] {
      compare(bench_chain(h, s, *ours_chain(precision, /*fused=*/false), "ours unfused", precision));
    });
    h.attempt(fmt::format("cublas step, batch {}", rows), [&] {
      compare(bench_chain(h, s, *cublas_chain(h.blas(), precision), "cublas", precision));
    });
    h.attempt(fmt::format("cublaslt step, batch {}", rows), [&] {
      compare(bench_chain(h, s, *cublaslt_chain(s, h.lt(), precision, h.lt_workspace()), "cublaslt", precision));
    });
#if VAE_BENCH_HAVE_CUDNN
    h.attempt(fmt::format("cudnn step, batch {}", rows), [&] {
      compare(bench_chain(h, s, *cudnn_chain(s, h.dnn(), h.blas(), precision), "cudnn", precision));
    });
#endif
  }
}

}  // namespace vae::bench
