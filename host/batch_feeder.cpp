// The batch feeder's producer thread and its hand-over protocol with the consumer. One mutex guards
// all shared state; the producer drops it while it waits on a slot's copy and gathers pixels, so
// the consumer never stalls behind a memcpy.
#include "vae/batch_feeder.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "vae/error.hpp"

namespace vae {

std::vector<BatchSpan> plan_batches(uint32_t count, int batch) {
  if (batch < 1)
    throw Error("plan_batches: batch size must be at least 1, got " + std::to_string(batch));
  std::vector<BatchSpan> spans;
  spans.reserve((static_cast<uint64_t>(count) + batch - 1) / batch);
  // 64-bit positions: first + batch may pass 2^32 on the last step.
  for (uint64_t first = 0; first < count; first += batch) {
    const auto rows = static_cast<int>(std::min<uint64_t>(batch, count - first));
    spans.push_back({static_cast<uint32_t>(first), rows});
  }
  return spans;
}

BatchFeeder::BatchFeeder(const MnistSplit& data, std::vector<uint8_t*> slots, int batch)
    : data_(data), slots_(std::move(slots)), batch_(batch) {
  if (slots_.empty()) throw Error("BatchFeeder: needs at least one slot");
  if (std::find(slots_.begin(), slots_.end(), nullptr) != slots_.end())
    throw Error("BatchFeeder: a slot is a null pointer");
  if (batch_ < 1)
    throw Error("BatchFeeder: batch size must be at least 1, got " + std::to_string(batch_));
  for (int slot = 0; slot < slot_count(); ++slot) free_slots_.push_back(slot);
  in_use_.assign(slots_.size(), false);
  reusable_.resize(slots_.size());
  producer_ = std::thread([this] { produce(); });
}

BatchFeeder::~BatchFeeder() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  producer_wake_.notify_one();
  producer_.join();
}

void BatchFeeder::start_epoch(std::vector<uint32_t> order) {
  if (order.size() > std::numeric_limits<uint32_t>::max())
    throw Error("BatchFeeder: an epoch of " + std::to_string(order.size()) + " images is too long");
  for (uint32_t index : order) {
    if (index >= data_.count) {
      throw Error("BatchFeeder: image index " + std::to_string(index) +
                  " is out of range for a data set of " + std::to_string(data_.count) + " images");
    }
  }
  {
    std::lock_guard lock(mutex_);
    rethrow_failure();
    if (handed_ != spans_.size()) {
      throw Error("BatchFeeder: start_epoch while " + std::to_string(spans_.size() - handed_) +
                  " batches of the previous epoch are unconsumed");
    }
    // Every batch was handed out, so the producer has finished with the old order and spans.
    spans_ = plan_batches(static_cast<uint32_t>(order.size()), batch_);
    order_ = std::move(order);
    filled_ = handed_ = 0;
  }
  producer_wake_.notify_one();
}

std::optional<BatchFeeder::Batch> BatchFeeder::next() {
  std::unique_lock lock(mutex_);
  rethrow_failure();
  if (handed_ == spans_.size()) return std::nullopt;
  // With every slot held by the consumer the producer can never deliver: fail instead of hanging.
  if (ready_.empty() && std::find(in_use_.begin(), in_use_.end(), false) == in_use_.end())
    throw Error("BatchFeeder: next() while all " + std::to_string(slot_count()) + " slots are held");
  consumer_wake_.wait(lock, [this] { return !ready_.empty() || failure_; });
  rethrow_failure();
  const Batch batch = ready_.front();
  ready_.pop_front();
  in_use_[batch.slot] = true;
  ++handed_;
  return batch;
}

void BatchFeeder::release(int slot, std::function<void()> reusable) {
  {
    std::lock_guard lock(mutex_);
    if (slot < 0 || slot >= slot_count() || !in_use_[slot])
      throw Error("BatchFeeder: release of slot " + std::to_string(slot) + ", which is not in use");
    in_use_[slot] = false;
    reusable_[slot] = std::move(reusable);
    free_slots_.push_back(slot);
  }
  producer_wake_.notify_one();
}

// Called with the mutex held. Keeps vae::Error (and its subclasses) as thrown; wraps anything else.
void BatchFeeder::rethrow_failure() const {
  if (!failure_) return;
  try {
    std::rethrow_exception(failure_);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& error) {
    throw Error(std::string("BatchFeeder: producer failed: ") + error.what());
  } catch (...) {
    throw Error("BatchFeeder: producer failed with a non-standard exception");
  }
}

void BatchFeeder::produce() {
  const size_t image_size = static_cast<size_t>(data_.image_size());
  std::unique_lock lock(mutex_);
  for (;;) {
    producer_wake_.wait(lock, [this] {
      return stop_ || (!failure_ && filled_ < spans_.size() && !free_slots_.empty());
    });
    if (stop_) return;
    const int slot = free_slots_.front();
    free_slots_.pop_front();
    const int index = static_cast<int>(filled_++);
    const BatchSpan span = spans_[index];
    const uint32_t* images = order_.data() + span.first;
    std::function<void()> reusable = std::exchange(reusable_[slot], {});
    lock.unlock();

    std::exception_ptr failure;
    try {
      if (reusable) reusable();  // the consumer's copy out of this slot must be over before we write
      uint8_t* out = slots_[slot];
      for (int row = 0; row < span.rows; ++row)
        std::memcpy(out + row * image_size, data_.pixels.data() + images[row] * image_size, image_size);
    } catch (...) {
      failure = std::current_exception();
    }

    lock.lock();
    if (failure)
      failure_ = failure;
    else
      ready_.push_back({index, slot, span.rows, slots_[slot]});
    consumer_wake_.notify_one();
  }
}

}  // namespace vae
