// The fiber engine behind emulator.hpp. Each CUDA thread of the running block is a ucontext fiber
// with its own stack; the scheduler resumes every ready fiber in turn (ascending and descending
// thread order alternately, so a missing barrier shows whichever way it was wrong) until all wait
// at a barrier, then releases the barrier. Warp collectives wait for the warp's live lanes only.
#include "emulator.hpp"

#include <fmt/format.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "vae/error.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define VAE_EMU_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define VAE_EMU_TSAN 1
#endif

namespace vae::emu {
namespace {

// Kernel frames are small, but sanitizer-instrumented frames are several times larger.
constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kGuardBytes = 4096;
constexpr unsigned kMaxThreadsPerBlock = 1024;

enum class State { kReady, kAtBlockBarrier, kAtWarpBarrier, kDone };

struct Fiber {
  ucontext_t context{};
  char* stack = nullptr;  // kStackBytes usable, above a guard page
  unsigned slot = 0;      // linear thread index in the block
  // Written by the fiber, read by the scheduler between switches: atomics (relaxed, so that they
  // order nothing) keep TSan from calling the scheduler's bookkeeping a race.
  std::atomic<State> state{State::kDone};
  std::atomic<unsigned> warp_mask{0};   // the mask the lane passed to the collective it waits in
  std::atomic<uint32_t> collective{0};  // which collective that is (instruction and qualifiers)
  std::atomic<bool> failed{false};     // set with release after `error`, so the scheduler may read it
  unsigned block_generation = 0, warp_generation = 0;
  // This lane's contributions to the warp's collectives, double-buffered by warp generation: a lane
  // can only write a buffer again after every lane has passed the barrier that follows its reads.
  // Relaxed atomics: a shuffle moves registers, it orders no memory (only __syncwarp does), so
  // under TSan it must not hide a race on shared memory between two lanes.
  std::atomic<uint64_t> exchange[2] = {};
  std::atomic<uint32_t> mma_a[2][4] = {}, mma_b[2][2] = {};
  std::exception_ptr error;
  bool abandoned = false;  // left mid-kernel by a failed launch: its stack's shadow is stale
  void* tsan_fiber = nullptr;
  void* asan_fake_stack = nullptr;
};

std::string text(dim3 d) { return fmt::format("({}, {}, {})", d.x, d.y, d.z); }

class Engine {
 public:
  ~Engine();
  void launch(dim3 grid, dim3 block, const std::function<void()>& body);

  Fiber& current() const { return *current_.load(std::memory_order_relaxed); }
  uint3 thread_index() const;
  uint3 block_index() const { return block_index_; }
  dim3 block_dim() const { return block_; }
  dim3 grid_dim() const { return grid_; }
  void wait(State state);  // from a fiber: park at a barrier until the scheduler releases it
  void block_barrier();
  WarpValues exchange_in_warp(unsigned mask, uint64_t value, uint32_t collective, bool orders_memory);
  void wait_in_warp(Fiber& fiber, unsigned mask, uint32_t collective, bool orders_memory);
  void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);
  long long launches = 0;
  uint64_t block_order_seed = 0;

 private:
  static void entry();
  friend void restart(Fiber& fiber);
  void prepare_fibers(unsigned count);
  void run_block(unsigned threads, bool ascending);
  void resume(Fiber& fiber);
  bool release_warps(unsigned threads);
  void abandon(unsigned threads);
  [[noreturn]] void fail(const std::string& what, unsigned threads);
  unsigned live_mask(unsigned warp, unsigned threads) const;

  std::vector<std::unique_ptr<Fiber>> fibers_;
  std::atomic<Fiber*> current_{nullptr};  // written between switches: atomic keeps TSan quiet
  ucontext_t scheduler_{};
  const std::function<void()>* body_ = nullptr;
  dim3 grid_{}, block_{};
  uint3 block_index_{};
  const void* scheduler_stack_bottom_ = nullptr;
  size_t scheduler_stack_size_ = 0;
  void* scheduler_tsan_ = nullptr;
  bool running_ = false;
  // TSan sync objects (only their addresses matter). Two per barrier so that a thread's release for
  // the next barrier never reaches a slower thread's acquire for this one.
  char block_sync_[2] = {}, warp_sync_[kMaxThreadsPerBlock / kWarpSize][2] = {}, block_done_ = 0;
};

thread_local Engine engine;

Engine::~Engine() {
  for (auto& fiber : fibers_) {
#if VAE_EMU_TSAN
    if (fiber->tsan_fiber != nullptr) __tsan_destroy_fiber(fiber->tsan_fiber);
#endif
    munmap(fiber->stack - kGuardBytes, kStackBytes + kGuardBytes);
  }
}

uint3 Engine::thread_index() const {
  const unsigned slot = current().slot;
  return uint3{slot % block_.x, (slot / block_.x) % block_.y, slot / (block_.x * block_.y)};
}

void Engine::prepare_fibers(unsigned count) {
  while (fibers_.size() < count) {
    auto fiber = std::make_unique<Fiber>();
    void* memory = mmap(nullptr, kStackBytes + kGuardBytes, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (memory == MAP_FAILED) throw Error("emulator: cannot map a fiber stack");
    if (mprotect(memory, kGuardBytes, PROT_NONE) != 0)  // a stack overflow faults instead of corrupting
      throw Error("emulator: cannot protect a fiber stack's guard page");
    fiber->stack = static_cast<char*>(memory) + kGuardBytes;
    fiber->slot = static_cast<unsigned>(fibers_.size());
#if VAE_EMU_TSAN
    fiber->tsan_fiber = __tsan_create_fiber(0);
#endif
    fibers_.push_back(std::move(fiber));
  }
}

// The first code a fiber runs: the kernel body, then back to the scheduler for good.
void Engine::entry() {
  Engine& self = engine;
  Fiber& fiber = self.current();
#if VAE_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &self.scheduler_stack_bottom_, &self.scheduler_stack_size_);
#endif
  try {
    (*self.body_)();
  } catch (...) {
    fiber.error = std::current_exception();
    fiber.failed.store(true, std::memory_order_release);
  }
  fiber.state.store(State::kDone, std::memory_order_relaxed);
#if VAE_EMU_TSAN
  __tsan_release(&self.block_done_);
  __tsan_switch_to_fiber(self.scheduler_tsan_, __tsan_switch_to_fiber_no_sync);
#endif
#if VAE_EMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, self.scheduler_stack_bottom_, self.scheduler_stack_size_);
#endif
  setcontext(&self.scheduler_);
}

void Engine::resume(Fiber& fiber) {
  current_.store(&fiber, std::memory_order_relaxed);
#if VAE_EMU_TSAN
  // Synchronising here hands the fiber what the host wrote before the launch; the way back does
  // not synchronise, so the threads of a block stay unordered except through their barriers.
  __tsan_switch_to_fiber(fiber.tsan_fiber, 0);
#endif
#if VAE_EMU_ASAN
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(&fake_stack, fiber.stack, kStackBytes);
#endif
  swapcontext(&scheduler_, &fiber.context);
#if VAE_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
}

void Engine::wait(State state) {
  Fiber& fiber = current();
  fiber.state.store(state, std::memory_order_relaxed);
#if VAE_EMU_TSAN
  __tsan_switch_to_fiber(scheduler_tsan_, __tsan_switch_to_fiber_no_sync);
#endif
#if VAE_EMU_ASAN
  __sanitizer_start_switch_fiber(&fiber.asan_fake_stack, scheduler_stack_bottom_, scheduler_stack_size_);
#endif
  swapcontext(&fiber.context, &scheduler_);
#if VAE_EMU_ASAN
  __sanitizer_finish_switch_fiber(fiber.asan_fake_stack, &scheduler_stack_bottom_, &scheduler_stack_size_);
#endif
}

void Engine::block_barrier() {
  Fiber& fiber = current();
  char* sync = &block_sync_[fiber.block_generation++ & 1];
#if VAE_EMU_TSAN
  __tsan_release(sync);
#endif
  wait(State::kAtBlockBarrier);
#if VAE_EMU_TSAN
  __tsan_acquire(sync);
#endif
  (void)sync;
}

unsigned Engine::live_mask(unsigned warp, unsigned threads) const {
  unsigned mask = 0;
  for (unsigned lane = 0; lane < kWarpSize; ++lane) {
    const unsigned slot = warp * kWarpSize + lane;
    if (slot < threads && fibers_[slot]->state.load(std::memory_order_relaxed) != State::kDone) mask |= 1u << lane;
  }
  return mask;
}

// Parks the lane in a warp collective until every live lane of its warp is in the same one.
void Engine::wait_in_warp(Fiber& fiber, unsigned mask, uint32_t collective, bool orders_memory) {
  fiber.warp_mask.store(mask, std::memory_order_relaxed);
  fiber.collective.store(collective, std::memory_order_relaxed);
  char* sync = &warp_sync_[fiber.slot / kWarpSize][fiber.warp_generation & 1];
#if VAE_EMU_TSAN
  if (orders_memory) __tsan_release(sync);
#endif
  wait(State::kAtWarpBarrier);
#if VAE_EMU_TSAN
  if (orders_memory) __tsan_acquire(sync);
#endif
  (void)sync, (void)orders_memory;
}

WarpValues Engine::exchange_in_warp(unsigned mask, uint64_t value, uint32_t collective, bool orders_memory) {
  Fiber& fiber = current();
  const unsigned warp = fiber.slot / kWarpSize, buffer = fiber.warp_generation & 1;
  fiber.exchange[buffer].store(value, std::memory_order_relaxed);
  wait_in_warp(fiber, mask, collective, orders_memory);
  ++fiber.warp_generation;
  WarpValues values{};
  const unsigned threads = block_.x * block_.y * block_.z;
  for (unsigned lane = 0; lane < kWarpSize; ++lane) {
    const unsigned slot = warp * kWarpSize + lane;
    if (slot < threads) values.lane[lane] = fibers_[slot]->exchange[buffer].load(std::memory_order_relaxed);
  }
  return values;
}

uint32_t tf32_bits(uint32_t x) { return x & 0xFFFFE000u; }  // the operand bits an mma.tf32 reads

// PTX ISA, "Matrix Fragments for mma.m16n8k8" with .tf32: groupID = lane / 4, threadID_in_group =
// lane % 4. A (16x8): a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4). B (8x8): b0 (k = t,
// n = g), b1 (k = t + 4, n = g). C and D (16x8): c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1).
void Engine::mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  Fiber& fiber = current();
  const unsigned warp = fiber.slot / kWarpSize, buffer = fiber.warp_generation & 1;
  for (int i = 0; i < 4; ++i) fiber.mma_a[buffer][i].store(a[i], std::memory_order_relaxed);
  for (int i = 0; i < 2; ++i) fiber.mma_b[buffer][i].store(b[i], std::memory_order_relaxed);
  wait_in_warp(fiber, 0xFFFFFFFFu, kMmaCollective, false);  // mma.sync.aligned: the whole warp, always
  ++fiber.warp_generation;
  float A[16][8], B[8][8];
  auto operand = [](const std::atomic<uint32_t>& bits) {
    return std::bit_cast<float>(tf32_bits(bits.load(std::memory_order_relaxed)));
  };
  for (unsigned lane = 0; lane < kWarpSize; ++lane) {
    const Fiber& other = *fibers_[warp * kWarpSize + lane];
    const unsigned g = lane / 4, t = lane % 4;
    A[g][t] = operand(other.mma_a[buffer][0]);
    A[g + 8][t] = operand(other.mma_a[buffer][1]);
    A[g][t + 4] = operand(other.mma_a[buffer][2]);
    A[g + 8][t + 4] = operand(other.mma_a[buffer][3]);
    B[t][g] = operand(other.mma_b[buffer][0]);
    B[t + 4][g] = operand(other.mma_b[buffer][1]);
  }
  // The device's accumulation order and intermediate precision inside one mma are not specified;
  // here the TF32 products (exact in double) are summed in double and rounded once.
  const unsigned lane = fiber.slot % kWarpSize, g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const unsigned row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
    double sum = d[i];
    for (int k = 0; k < 8; ++k) sum += static_cast<double>(A[row][k]) * B[k][col];
    d[i] = static_cast<float>(sum);
  }
}

// After a failed block: the fibers still waiting are abandoned, and under TSan everything every
// fiber did is made to happen before what the host does next, as a finished block's is.
void Engine::abandon(unsigned threads) {
  for (unsigned i = 0; i < threads; ++i) {
    Fiber& fiber = *fibers_[i];
    if (fiber.state.load(std::memory_order_relaxed) != State::kDone) fiber.abandoned = true;
#if VAE_EMU_TSAN
    // Two switches of TSan's notion of the current fiber, with no code between: a join.
    __tsan_switch_to_fiber(fiber.tsan_fiber, 0);
    __tsan_switch_to_fiber(scheduler_tsan_, 0);
#endif
  }
#if VAE_EMU_TSAN
  __tsan_acquire(&block_done_);
#endif
}

[[noreturn]] void Engine::fail(const std::string& what, unsigned threads) {
  abandon(threads);
  throw Error(fmt::format("emulated launch, grid {} block {}, block {}: {}", text(grid_), text(block_),
                          text(dim3(block_index_.x, block_index_.y, block_index_.z)), what));
}

// Releases every warp whose live lanes all wait in a collective; false if none could be.
bool Engine::release_warps(unsigned threads) {
  bool released = false;
  for (unsigned warp = 0; warp * kWarpSize < threads; ++warp) {
    const unsigned live = live_mask(warp, threads);
    if (live == 0) continue;
    bool all_waiting = true;
    for (unsigned lane = 0; lane < kWarpSize && all_waiting; ++lane)
      if (live >> lane & 1) all_waiting = fibers_[warp * kWarpSize + lane]->state.load(std::memory_order_relaxed) == State::kAtWarpBarrier;
    if (!all_waiting) continue;
    for (unsigned lane = 0; lane < kWarpSize; ++lane) {
      if (!(live >> lane & 1)) continue;
      Fiber& fiber = *fibers_[warp * kWarpSize + lane];
      if (fiber.warp_mask.load(std::memory_order_relaxed) != live)
        fail(fmt::format("warp {}: a warp collective with mask {:#010x} while the live lanes are {:#010x}", warp,
                         fiber.warp_mask.load(std::memory_order_relaxed), live),
             threads);
      const Fiber& first = *fibers_[warp * kWarpSize + static_cast<unsigned>(std::countr_zero(live))];
      if (fiber.collective.load(std::memory_order_relaxed) != first.collective.load(std::memory_order_relaxed))
        fail(fmt::format("warp {}: lanes wait in different warp collectives (instruction or width differ)", warp),
             threads);
      fiber.state.store(State::kReady, std::memory_order_relaxed);
    }
    released = true;
  }
  return released;
}

// Points the fiber at the start of the kernel body again. Kept out of line: getcontext returns twice
// as far as the compiler knows, which would pin the caller's loop variables to memory.
__attribute__((noinline)) void restart(Fiber& fiber) {
#if VAE_EMU_ASAN
  if (fiber.abandoned) ASAN_UNPOISON_MEMORY_REGION(fiber.stack, kStackBytes);
#endif
#if VAE_EMU_TSAN
  if (fiber.abandoned) {  // its TSan fiber still holds the frames it was left in
    __tsan_destroy_fiber(fiber.tsan_fiber);
    fiber.tsan_fiber = __tsan_create_fiber(0);
  }
#endif
  fiber.abandoned = false;
  getcontext(&fiber.context);
  fiber.context.uc_stack.ss_sp = fiber.stack;
  fiber.context.uc_stack.ss_size = kStackBytes;
  fiber.context.uc_link = nullptr;
  makecontext(&fiber.context, &Engine::entry, 0);
  // ASan's swapcontext interceptor clears the shadow of uc_stack on every switch, which would wipe
  // the redzones of a waiting kernel's frames; the stack is only needed by makecontext.
  fiber.context.uc_stack = stack_t{};
  fiber.state.store(State::kReady, std::memory_order_relaxed);
  fiber.error = nullptr;
  fiber.failed.store(false, std::memory_order_relaxed);
  fiber.block_generation = fiber.warp_generation = 0;
}

void Engine::run_block(unsigned threads, bool ascending) {
  for (unsigned i = 0; i < threads; ++i) restart(*fibers_[i]);
  unsigned done = 0;
  while (done < threads) {
    for (unsigned n = 0; n < threads; ++n) {
      Fiber& fiber = *fibers_[ascending ? n : threads - 1 - n];
      if (fiber.state.load(std::memory_order_relaxed) != State::kReady) continue;
      resume(fiber);
      if (fiber.failed.load(std::memory_order_acquire)) {
        const std::exception_ptr error = fiber.error;
        abandon(threads);
        std::rethrow_exception(error);
      }
    }
    ascending = !ascending;
    unsigned at_block_barrier = 0;
    done = 0;
    for (unsigned i = 0; i < threads; ++i) {
      at_block_barrier += fibers_[i]->state.load(std::memory_order_relaxed) == State::kAtBlockBarrier;
      done += fibers_[i]->state.load(std::memory_order_relaxed) == State::kDone;
    }
    if (done == threads || release_warps(threads)) continue;
    if (at_block_barrier + done == threads) {
      if (done > 0)
        fail(fmt::format("__syncthreads reached by {} threads while {} had returned (a hang or undefined on the "
                         "device)",
                         at_block_barrier, done),
             threads);
      for (unsigned i = 0; i < threads; ++i) fibers_[i]->state.store(State::kReady, std::memory_order_relaxed);
      continue;
    }
    fail("deadlock: threads wait in a warp collective while others of their warp wait at __syncthreads", threads);
  }
#if VAE_EMU_TSAN
  // Blocks run one after another here; on the device they have separate shared memory, so the next
  // block's threads must not look racy against this block's.
  __tsan_acquire(&block_done_);
#endif
}

void Engine::launch(dim3 grid, dim3 block, const std::function<void()>& body) {
  const uint64_t threads = static_cast<uint64_t>(block.x) * block.y * block.z;
  if (threads == 0 || threads > kMaxThreadsPerBlock || block.x > 1024 || block.y > 1024 || block.z > 64 ||
      grid.x == 0 || grid.y == 0 ||
      grid.z == 0 || grid.x > 0x7FFFFFFFu || grid.y > 65535 || grid.z > 65535)
    throw Error(fmt::format("emulated launch: invalid configuration argument (grid {}, block {})", text(grid),
                            text(block)));
  if (running_) throw Error("emulated launch: a kernel may not launch another (no dynamic parallelism here)");
  running_ = true;
  struct Finish {
    Engine& self;
    ~Finish() {
      self.running_ = false;
      self.current_.store(nullptr, std::memory_order_relaxed);
    }
  } finish{*this};
  ++launches;
  prepare_fibers(static_cast<unsigned>(threads));
#if VAE_EMU_TSAN
  if (scheduler_tsan_ == nullptr) scheduler_tsan_ = __tsan_get_current_fiber();
#endif
  body_ = &body;
  grid_ = grid;
  block_ = block;
  std::vector<uint3> blocks;
  blocks.reserve(static_cast<size_t>(grid.x) * grid.y * grid.z);
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) blocks.push_back(uint3{x, y, z});
  if (block_order_seed != 0) {
    std::mt19937_64 order(block_order_seed ^ static_cast<uint64_t>(launches));
    std::shuffle(blocks.begin(), blocks.end(), order);
  }
  bool ascending = true;
  for (const uint3& index : blocks) {
    block_index_ = index;
    run_block(static_cast<unsigned>(threads), ascending);
    ascending = !ascending;
  }
}

}  // namespace

void launch(dim3 grid, dim3 block, const std::function<void()>& body) { engine.launch(grid, block, body); }
long long launch_count() { return engine.launches; }
void reset_launch_count() { engine.launches = 0; }
void set_block_order(uint64_t seed) { engine.block_order_seed = seed; }
uint3 thread_index() { return engine.thread_index(); }
uint3 block_index() { return engine.block_index(); }
dim3 block_dim() { return engine.block_dim(); }
dim3 grid_dim() { return engine.grid_dim(); }
void sync_block() { engine.block_barrier(); }
WarpValues exchange_in_warp(unsigned mask, uint64_t value, uint32_t collective, bool orders_memory) {
  return engine.exchange_in_warp(mask, value, collective, orders_memory);
}
int lane_id() { return static_cast<int>(engine.current().slot % kWarpSize); }

uint32_t round_to_tf32(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if (std::isnan(x)) return 0x7FFFFFFFu;  // the canonical NaN
  // Adding half of the dropped range to the magnitude and truncating rounds half away from zero;
  // a carry into the exponent is the correct rounding up (to infinity past the largest TF32).
  return (bits + 0x1000u) & 0xFFFFE000u;
}

void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) { engine.mma(d, a, b); }

}  // namespace vae::emu
