// BatchFeeder: a producer thread that gathers each shuffled batch's images into a ring of host slots
// while the consumer trains on earlier ones, so data gathering hides behind GPU work. It knows no
// CUDA: the consumer hands it a "reusable" callback per released slot (cudaEventSynchronize on the
// copy's event in GPU mode), which keeps the class testable on a CPU-only machine.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "vae/idx.hpp"

namespace vae {

// Positions [first, first + rows) of an epoch's order form one batch; the last one may be partial.
struct BatchSpan {
  uint32_t first = 0;
  int rows = 0;
};
std::vector<BatchSpan> plan_batches(uint32_t count, int batch);  // batch >= 1; count 0 -> empty

// A slot goes free -> filled (by the producer) -> in use (handed out by next()) -> free again on
// release(). The producer fills batches strictly in order, each into the slot released longest
// ago, since that slot's pending copy is the one most likely finished. Its consumer side (the other
// member functions) is meant for one thread.
class BatchFeeder {
 public:
  // slots: K >= 1 host buffers, each at least batch * data.image_size() bytes, owned by the caller
  // and outliving the feeder. data must outlive the feeder too.
  BatchFeeder(const MnistSplit& data, std::vector<uint8_t*> slots, int batch);
  // Stops the producer, even mid-epoch, and joins it. A waiter it is running finishes first;
  // waiters still pending on released slots are dropped uncalled.
  ~BatchFeeder();
  BatchFeeder(const BatchFeeder&) = delete;
  BatchFeeder& operator=(const BatchFeeder&) = delete;

  // Begins gathering the batches of one epoch in the background: batch b holds the images
  // order[first_b .. first_b + rows_b) in that order. Throws vae::Error if the previous epoch was
  // not fully consumed, or if an index in order is >= data.count (checked up front).
  void start_epoch(std::vector<uint32_t> order);

  struct Batch {
    int index = 0;
    int slot = 0;
    int rows = 0;
    const uint8_t* pixels = nullptr;
  };
  // Blocks until the next batch of the epoch is in its slot; std::nullopt after the epoch's last
  // batch. Rethrows (as vae::Error) anything that failed on the producer thread, including from a
  // waiter; such a failure ends the feeder, so every later call throws it again. Throws vae::Error
  // rather than waiting forever when the consumer holds every slot.
  std::optional<Batch> next();

  // The consumer is done reading batch.slot's host memory once `reusable` returns (call it with no
  // waiter when the memory is reusable now). Each slot returned by next() must be released exactly
  // once before the producer can fill it again; release out of order is allowed. Releasing a slot
  // that is not in use throws vae::Error.
  void release(int slot, std::function<void()> reusable = {});

  int slot_count() const { return static_cast<int>(slots_.size()); }

 private:
  void produce();  // the producer thread's loop
  void rethrow_failure() const;

  const MnistSplit& data_;
  const std::vector<uint8_t*> slots_;
  const int batch_;

  std::mutex mutex_;
  std::condition_variable producer_wake_;  // a slot went free, an epoch began, or stop
  std::condition_variable consumer_wake_;  // a batch is ready, or the producer failed
  std::vector<uint32_t> order_;
  std::vector<BatchSpan> spans_;
  size_t filled_ = 0;           // batches of this epoch the producer has taken on
  size_t handed_ = 0;           // batches of this epoch next() has returned
  std::deque<Batch> ready_;     // filled and not yet handed out, in batch order
  std::deque<int> free_slots_;  // in the order they were released
  std::vector<bool> in_use_;    // per slot: handed out by next(), not yet released
  std::vector<std::function<void()>> reusable_;  // per slot: to call before overwriting it
  std::exception_ptr failure_;
  bool stop_ = false;
  std::thread producer_;  // last, so it starts after everything it reads is built
};

}  // namespace vae
