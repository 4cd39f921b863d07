// The cuDNN backend (graph) API, used directly: tensors as 3-D [batch 1, rows, cols] with explicit
// strides (Wᵀ is our row-major W read with swapped strides), a matmul and two pointwise nodes,
// heuristic mode A, and the first engine config that finalises and runs in the asked precision.
#include "baseline_cudnn_graph.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <utility>

#include "cudnn_check.hpp"
#include "vae/error.hpp"

namespace vae::bench::cudnn {
namespace {

template <typename T>
void set(const BackendDescriptor& d, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
         const T* values) {
  VAE_CUDNN_CHECK(cudnnBackendSetAttribute(d.get(), name, type, count, values));
}

void set_descriptor(const BackendDescriptor& d, cudnnBackendAttributeName_t name, const BackendDescriptor& value) {
  const cudnnBackendDescriptor_t raw = value.get();
  set(d, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw);
}

enum Uid : int64_t { kX = 1, kWeight, kBias, kY, kProduct, kBiased };

BackendDescriptor tensor(int64_t uid, std::array<int64_t, 3> dims, std::array<int64_t, 3> strides, bool is_virtual) {
  BackendDescriptor t(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  const cudnnDataType_t type = CUDNN_DATA_FLOAT;
  const int64_t alignment = 16;
  set(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
  set(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 3, dims.data());
  set(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 3, strides.data());
  set(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
  set(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment);
  set(t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual);
  VAE_CUDNN_CHECK(cudnnBackendFinalize(t.get()));
  return t;
}

BackendDescriptor pointwise(cudnnPointwiseMode_t mode) {
  BackendDescriptor p(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
  const cudnnDataType_t precision = CUDNN_DATA_FLOAT;
  set(p, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
  set(p, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &precision);
  VAE_CUDNN_CHECK(cudnnBackendFinalize(p.get()));
  return p;
}

// Does this engine config run FP32 operands on tensor cores (TF32)? Read from its numerical notes.
bool uses_tensor_cores(cudnnBackendDescriptor_t config) {
  BackendDescriptor engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
  cudnnBackendDescriptor_t raw = engine.get();
  int64_t count = 0;
  VAE_CUDNN_CHECK(cudnnBackendGetAttribute(config, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                           &count, &raw));
  std::array<cudnnBackendNumericalNote_t, CUDNN_NUMERICAL_NOTE_TYPE_COUNT> notes{};
  VAE_CUDNN_CHECK(cudnnBackendGetAttribute(engine.get(), CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                                           static_cast<int64_t>(notes.size()), &count, notes.data()));
  return std::any_of(notes.begin(), notes.begin() + count, [](cudnnBackendNumericalNote_t n) {
    return n == CUDNN_NUMERICAL_NOTE_TENSOR_CORE || n == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS;
  });
}

}  // namespace

BackendDescriptor::BackendDescriptor(cudnnBackendDescriptorType_t type) {
  VAE_CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &descriptor_));
}

BackendDescriptor::~BackendDescriptor() {
  if (descriptor_ != nullptr) cudnnBackendDestroyDescriptor(descriptor_);
}

BackendDescriptor::BackendDescriptor(BackendDescriptor&& other) noexcept
    : descriptor_(std::exchange(other.descriptor_, nullptr)) {}

FusedLinearForward::FusedLinearForward(cudnnHandle_t handle, int rows, int in, int out, bool relu, Precision precision,
                                       const float* x, const float* weight, const float* bias, float* y)
    : handle_(handle) {
  keep_.reserve(32);  // references into keep_ below must not move while the graph is built
  const int64_t r = rows, i = in, o = out;
  // x [rows, in] row-major; Wᵀ [in, out] is W [out, in] read with strides (1, in); outputs [rows, out].
  keep_.push_back(tensor(kX, {1, r, i}, {r * i, i, 1}, false));
  keep_.push_back(tensor(kWeight, {1, i, o}, {i * o, 1, i}, false));
  keep_.push_back(tensor(kBias, {1, 1, o}, {o, o, 1}, false));
  keep_.push_back(tensor(kProduct, {1, r, o}, {r * o, o, 1}, true));
  keep_.push_back(tensor(kBiased, {1, r, o}, {r * o, o, 1}, relu));  // the output itself without ReLU
  if (relu) keep_.push_back(tensor(kY, {1, r, o}, {r * o, o, 1}, false));
  const BackendDescriptor &x_t = keep_[0], &w_t = keep_[1], &b_t = keep_[2], &product_t = keep_[3],
                          &biased_t = keep_[4];

  BackendDescriptor matmul(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
  const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  set(matmul, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute);
  VAE_CUDNN_CHECK(cudnnBackendFinalize(matmul.get()));

  BackendDescriptor matmul_op(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
  set_descriptor(matmul_op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, x_t);
  set_descriptor(matmul_op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, w_t);
  set_descriptor(matmul_op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, product_t);
  set_descriptor(matmul_op, CUDNN_ATTR_OPERATION_MATMUL_DESC, matmul);
  VAE_CUDNN_CHECK(cudnnBackendFinalize(matmul_op.get()));

  BackendDescriptor add = pointwise(CUDNN_POINTWISE_ADD);
  BackendDescriptor add_op(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
  set_descriptor(add_op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, add);
  set_descriptor(add_op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, product_t);
  set_descriptor(add_op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b_t);
  set_descriptor(add_op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, biased_t);
  VAE_CUDNN_CHECK(cudnnBackendFinalize(add_op.get()));

  std::vector<cudnnBackendDescriptor_t> ops = {matmul_op.get(), add_op.get()};
  BackendDescriptor relu_mode = pointwise(CUDNN_POINTWISE_RELU_FWD);
  BackendDescriptor relu_op(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
  if (relu) {
    set_descriptor(relu_op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, relu_mode);
    set_descriptor(relu_op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, biased_t);
    set_descriptor(relu_op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, keep_[5]);
    VAE_CUDNN_CHECK(cudnnBackendFinalize(relu_op.get()));
    ops.push_back(relu_op.get());
  }

  BackendDescriptor graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  set(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, static_cast<int64_t>(ops.size()), ops.data());
  set(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle_);
  VAE_CUDNN_CHECK(cudnnBackendFinalize(graph.get()));

  BackendDescriptor heuristics(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
  set_descriptor(heuristics, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph);
  set(heuristics, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
  VAE_CUDNN_CHECK(cudnnBackendFinalize(heuristics.get()));
  int64_t available = 0;
  VAE_CUDNN_CHECK(cudnnBackendGetAttribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                           CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &available, nullptr));
  std::vector<BackendDescriptor> configs;
  std::vector<cudnnBackendDescriptor_t> raw_configs;
  for (int64_t k = 0; k < available; ++k) {
    configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
    raw_configs.push_back(configs.back().get());
  }
  if (available > 0)
    VAE_CUDNN_CHECK(cudnnBackendGetAttribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                             CUDNN_TYPE_BACKEND_DESCRIPTOR, available, &available, raw_configs.data()));

  // The first config in the heuristic's order whose arithmetic is the asked precision and that
  // finalises into a plan on this device.
  const bool want_tensor_cores = precision == Precision::kTf32;
  for (int64_t k = 0; k < available && plan_ == nullptr; ++k) {
    if (uses_tensor_cores(raw_configs[k]) != want_tensor_cores) continue;
    BackendDescriptor plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
    set(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle_);
    set(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw_configs[k]);
    if (cudnnBackendFinalize(plan.get()) != CUDNN_STATUS_SUCCESS) continue;
    keep_.push_back(std::move(plan));
    plan_ = keep_.back().get();
  }
  if (plan_ == nullptr)
    throw Error(fmt::format("cuDNN {} offers no {} engine for matmul+bias{} ({} heuristic configs)",
                            cudnnGetVersion(), want_tensor_cores ? "TF32" : "FP32", relu ? "+ReLU" : "", available));

  int64_t workspace_bytes = 0;
  VAE_CUDNN_CHECK(cudnnBackendGetAttribute(plan_, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1,
                                           &available, &workspace_bytes));
  workspace_ = DeviceBuffer<unsigned char>(static_cast<size_t>(workspace_bytes));

  const std::vector<int64_t> uids = relu ? std::vector<int64_t>{kX, kWeight, kBias, kY}
                                         : std::vector<int64_t>{kX, kWeight, kBias, kBiased};
  std::vector<void*> pointers = {const_cast<float*>(x), const_cast<float*>(weight), const_cast<float*>(bias), y};
  void* workspace = workspace_.data();
  BackendDescriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  set(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, static_cast<int64_t>(uids.size()), uids.data());
  set(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, static_cast<int64_t>(pointers.size()),
      pointers.data());
  set(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
  VAE_CUDNN_CHECK(cudnnBackendFinalize(pack.get()));
  keep_.push_back(std::move(pack));
  variant_pack_ = keep_.back().get();
  // The operation descriptors must outlive the plan too.
  for (BackendDescriptor* d : {&matmul, &matmul_op, &add, &add_op, &relu_mode, &relu_op, &graph})
    keep_.push_back(std::move(*d));
}

void FusedLinearForward::run(cudaStream_t stream) {
  VAE_CUDNN_CHECK(cudnnSetStream(handle_, stream));
  VAE_CUDNN_CHECK(cudnnBackendExecute(handle_, plan_, variant_pack_));
}

}  // namespace vae::bench::cudnn
