// Per-op figures for the linear layers: each layer of the default model at one batch size, forward
// and backward, FP32 and TF32, ours against each library baseline on the same buffers, L2 flushed
// before every repetition (inside a step, a layer's operands are rarely still cached). Each
// baseline's outputs are compared with ours and the largest relative difference is recorded.
#include <fmt/format.h>

#include <algorithm>
#include <memory>

#include "baseline_cublas.hpp"
#include "baseline_cublaslt.hpp"
#include "benches.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/gemm_plan.hpp"
#include "vae/layout.hpp"

#if VAE_BENCH_HAVE_CUDNN
#include "baseline_cudnn.hpp"
#include "baseline_cudnn_graph.hpp"
#endif

namespace vae::bench {
namespace {

// Every buffer sized for the largest layer at this batch, so all layers share them.
struct Buffers {
  Buffers(int rows, int max_features, const cuda::GemmWorkspaceSize& gemm)
      : pixels(random_pixels(static_cast<size_t>(rows) * max_features, 1)),
        pixels_float(static_cast<size_t>(rows) * max_features),
        x(random_floats(static_cast<size_t>(rows) * max_features, 0.0f, 1.0f, 2)),
        weight(random_floats(static_cast<size_t>(max_features) * max_features, -0.05f, 0.05f, 3)),
        bias(random_floats(max_features, -0.05f, 0.05f, 4)),
        dy(random_floats(static_cast<size_t>(rows) * max_features, -1.0f, 1.0f, 5)),
        y_ours(activations(rows, max_features)),
        y_other(activations(rows, max_features)),
        dy_masked(activations(rows, max_features)),
        dx_ours(activations(rows, max_features)),
        dx_other(activations(rows, max_features)),
        dweight_ours(static_cast<size_t>(max_features) * max_features),
        dweight_other(static_cast<size_t>(max_features) * max_features),
        dbias_ours(max_features),
        dbias_other(max_features),
        below_dbias(max_features),
        mask(cublaslt::mask_bytes(rows, max_features)),
        below_mask(cublaslt::mask_bytes(rows, max_features)),
        gemm_workspace(static_cast<size_t>(std::max<int64_t>(gemm.floats, 1))),
        gemm_counters(static_cast<size_t>(std::max<int64_t>(gemm.counters, 1))) {
    gemm_counters.zero();  // the layer kernels leave them zero after every launch
    // Half the bits set, in a pattern: the layer below's ReLU mask, for the cuBLASLt backward.
    VAE_CUDA_CHECK(cudaMemset(below_mask.data(), 0x55, below_mask.size()));
    VAE_CUDA_CHECK(cudaDeviceSynchronize());  // the harness stream does not wait for the default stream
  }
  static DeviceBuffer<float> activations(int rows, int features) {
    return DeviceBuffer<float>(static_cast<size_t>(rows) * features);
  }

  DeviceBuffer<uint8_t> pixels;
  DeviceBuffer<float> pixels_float;  // pixels / 255: the baselines' first-layer input
  DeviceBuffer<float> x, weight, bias, dy;
  DeviceBuffer<float> y_ours, y_other, dy_masked, dx_ours, dx_other, dweight_ours, dweight_other;
  DeviceBuffer<float> dbias_ours, dbias_other, below_dbias;
  DeviceBuffer<uint8_t> mask, below_mask;
  DeviceBuffer<float> gemm_workspace;
  DeviceBuffer<unsigned> gemm_counters;

  cuda::GemmWorkspace workspace() {
    return {gemm_workspace.data(), static_cast<int64_t>(gemm_workspace.size()), gemm_counters.data(),
            static_cast<int64_t>(gemm_counters.size())};
  }
};

struct Layer {
  LinearSlot slot;
  bool first = false;       // reads uint8 pixels and has no dx
  bool below_relu = false;  // the layer feeding this one ends in a ReLU
  std::string shape;
};

void bench_forward(Harness& h, Buffers& b, const Layer& layer, int rows, Precision precision) {
  const LinearSlot& l = layer.slot;
  const cudaStream_t stream = h.stream();
  const OpCost cost = linear_forward_cost(rows, l.in, l.out, layer.first);
  const size_t outputs = static_cast<size_t>(rows) * l.out;
  const float* x = layer.first ? b.pixels_float.data() : b.x.data();
  const cuda::GemmWorkspace workspace = b.workspace();
  RowLabel label{"op", "linear forward", layer.shape, "ours", precision};

  // The plain layer: no epilogue.
  const cuda::LinearForward forward{.rows = rows,
                                    .in = l.in,
                                    .out = l.out,
                                    .activation = l.activation,
                                    .negative_slope = l.negative_slope,
                                    .x = layer.first ? nullptr : x,
                                    .pixels = layer.first ? b.pixels.data() : nullptr,
                                    .weight = b.weight.data(),
                                    .bias = b.bias.data(),
                                    .y = b.y_ours.data()};
  h.time(label, [&] { cuda::linear_forward(forward, precision, workspace, stream); }, cost);
  // The baselines cannot read uint8 operands: their first layer converts the pixels first, timed.
  const auto convert = [&] {
    if (layer.first)
      cublas::pixels_to_float(static_cast<int64_t>(rows) * l.in, b.pixels.data(), b.pixels_float.data(), stream);
  };
  const auto compare = [&] {
    h.record_difference(max_relative_difference(b.y_other.data(), b.y_ours.data(), outputs));
  };

  label.impl = "cublas";
  h.attempt("cublas forward " + layer.shape, [&] {
    poison(b.y_other);
    h.time(label, [&] {
      convert();
      cublas::linear_forward(h.blas(), rows, l.in, l.out, l.relu, x, b.weight.data(), b.bias.data(), b.y_other.data(),
                             precision, stream);
    }, cost);
    compare();
  });

  label.impl = "cublaslt";
  h.attempt("cublaslt forward " + layer.shape, [&] {
    poison(b.y_other);
    cublaslt::Linear lt(h.lt(), rows, l.in, l.out, l.relu, layer.below_relu, !layer.first, precision, h.lt_workspace());
    h.time(label, [&] {
      convert();
      lt.forward(x, b.weight.data(), b.bias.data(), b.y_other.data(), b.mask.data(), stream);
    }, cost);
    compare();
  });

#if VAE_BENCH_HAVE_CUDNN
  label.impl = "cudnn";
  h.attempt("cudnn forward " + layer.shape, [&] {
    poison(b.y_other);
    cudnn::Linear dnn(h.dnn(), h.blas(), rows, l.in, l.out, l.relu, precision);
    h.time(label, [&] {
      convert();
      dnn.forward(x, b.weight.data(), b.bias.data(), b.y_other.data(), stream);
    }, cost);
    compare();
  });

  label.impl = "cudnn graph";
  h.attempt("cudnn graph forward " + layer.shape, [&] {
    poison(b.y_other);
    cudnn::FusedLinearForward fused(h.dnn(), rows, l.in, l.out, l.relu, precision, x, b.weight.data(), b.bias.data(),
                                    b.y_other.data());
    h.time(label, [&] {
      convert();
      fused.run(stream);
    }, cost);
    compare();
  });
#endif
}

void bench_backward(Harness& h, Buffers& b, const Layer& layer, int rows, Precision precision) {
  const LinearSlot& l = layer.slot;
  const cudaStream_t stream = h.stream();
  const OpCost cost = linear_backward_cost(rows, l.in, l.out, l.relu, layer.first);
  const float* x = layer.first ? b.pixels_float.data() : b.x.data();
  float* dx_ours = layer.first ? nullptr : b.dx_ours.data();
  float* dx_other = layer.first ? nullptr : b.dx_other.data();
  const cuda::GemmWorkspace workspace = b.workspace();
  RowLabel label{"op", "linear backward", layer.shape, "ours", precision};

  // y_ours holds ours' forward output of this layer (bench_forward ran just before): the ReLU mask.
  // The plain layer: no epilogue, so the bias (which only Adam would update) is not needed.
  const cuda::LinearBackward backward{.rows = rows,
                                      .in = l.in,
                                      .out = l.out,
                                      .activation = l.activation,
                                      .negative_slope = l.negative_slope,
                                      .x = layer.first ? nullptr : x,
                                      .pixels = layer.first ? b.pixels.data() : nullptr,
                                      .weight = b.weight.data(),
                                      .y = b.y_ours.data(),
                                      .dy = b.dy.data(),
                                      .dx = dx_ours,
                                      .dweight = b.dweight_ours.data(),
                                      .dbias = b.dbias_ours.data()};
  h.time(label, [&] { cuda::linear_backward(backward, precision, workspace, stream); }, cost);
  // The largest relative difference over dW, db and (when it is comparable) dx.
  const auto compare = [&](bool input) {
    const double weights = max_relative_difference(b.dweight_other.data(), b.dweight_ours.data(),
                                                   static_cast<size_t>(l.in) * l.out);
    const double biases = max_relative_difference(b.dbias_other.data(), b.dbias_ours.data(), l.out);
    const double inputs = input && dx_ours != nullptr
                              ? max_relative_difference(dx_other, dx_ours, static_cast<size_t>(rows) * l.in)
                              : 0.0;
    h.record_difference(worst_of({weights, biases, inputs}));
  };
  const auto poison_outputs = [&] {
    poison(b.dweight_other);
    poison(b.dbias_other);
    poison(b.dx_other);
  };

  label.impl = "cublas";
  h.attempt("cublas backward " + layer.shape, [&] {
    poison_outputs();
    h.time(label, [&] {
      cublas::linear_backward(h.blas(), rows, l.in, l.out, l.relu, x, b.weight.data(), b.y_ours.data(), b.dy.data(),
                              b.dy_masked.data(), dx_other, b.dweight_other.data(), b.dbias_other.data(), precision,
                              stream);
    }, cost);
    compare(true);
  });

  // cuBLASLt's layer backward takes dy already masked and masks its dx with the layer below's mask
  // (baseline_cublaslt.hpp): its results match ours only where neither mask applies.
  label.impl = "cublaslt";
  h.attempt("cublaslt backward " + layer.shape, [&] {
    poison_outputs();
    cublaslt::Linear lt(h.lt(), rows, l.in, l.out, l.relu, layer.below_relu, !layer.first, precision, h.lt_workspace());
    h.time(label, [&] {
      lt.backward(x, b.weight.data(), b.dy.data(), b.below_mask.data(), dx_other, b.dweight_other.data(),
                  b.dbias_other.data(), b.below_dbias.data(), stream);
    }, cost);
    if (!l.relu) compare(!layer.below_relu);
  });

#if VAE_BENCH_HAVE_CUDNN
  label.impl = "cudnn";
  h.attempt("cudnn backward " + layer.shape, [&] {
    poison_outputs();
    cudnn::Linear dnn(h.dnn(), h.blas(), rows, l.in, l.out, l.relu, precision);
    h.time(label, [&] {
      dnn.backward(x, b.weight.data(), b.y_ours.data(), b.dy.data(), b.dy_masked.data(), dx_other,
                   b.dweight_other.data(), b.dbias_other.data(), stream);
    }, cost);
    compare(true);
  });
#endif
}

}  // namespace

void bench_linear_layers(Harness& h, int rows) {
  const ParamLayout layout = make_layout(ModelConfig{});
  int max_features = 0;
  for (const LinearSlot& l : layout.layers) max_features = std::max({max_features, l.in, l.out});
  cuda::GemmWorkspaceSize gemm;
  for (Precision p : {Precision::kFp32, Precision::kTf32})
    gemm.cover(cuda::model_workspace_size(layout, rows, p, h.device().sm_count));
  h.note_once(
      "cublaslt linear backward: a ReLU layer's mask and bias gradient are applied by the next layer's dx GEMM "
      "(DRELU_BGRAD), so each cublaslt row masks the gradient of the layer below instead of its own; per layer "
      "the work differs from ours, over the model it is the same (see the step rows)");
  Buffers buffers(rows, max_features, gemm);
  // The baselines' first-layer input, for their backward (their forward keeps it, as a step would).
  cublas::pixels_to_float(static_cast<int64_t>(rows) * layout.layers[0].in, buffers.pixels.data(),
                          buffers.pixels_float.data(), h.stream());

  for (size_t i = 0; i < layout.layers.size(); ++i) {
    Layer layer;
    layer.slot = layout.layers[i];
    layer.first = i == 0;
    // The decoder's first layer is fed by the reparameterisation, not by a ReLU.
    layer.below_relu = i > 0 && static_cast<int>(i) != layout.first_decoder() && layout.layers[i - 1].relu;
    layer.shape = fmt::format("{}->{}{}, batch {}", layer.slot.in, layer.slot.out, layer.slot.relu ? " relu" : "", rows);
    for (Precision precision : {Precision::kFp32, Precision::kTf32}) {
      bench_forward(h, buffers, layer, rows, precision);
      bench_backward(h, buffers, layer, rows, precision);
    }
  }
}

}  // namespace vae::bench
