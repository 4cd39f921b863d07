// Tests of the batch feeder on a synthetic data set whose pixels encode each image's index, so a
// wrong, stale or torn batch shows up byte for byte. They check the protocol the GPU runtime leans
// on: content and order of every batch, slot ownership until release, waiters called once and
// before the slot is overwritten, failures surfacing on the consumer, and prompt shutdown.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "vae/batch_feeder.hpp"
#include "vae/error.hpp"
#include "vae/idx.hpp"

namespace {

using vae::BatchFeeder;
using vae::BatchSpan;
using Bytes = std::vector<uint8_t>;

constexpr int kImages = 1000;

// 1000 images of 8x8: the first two bytes hold the index, the rest a pattern that differs per image.
const vae::MnistSplit& synthetic_data() {
  static const vae::MnistSplit data = [] {
    vae::MnistSplit split;
    split.count = kImages;
    split.rows = split.cols = 8;
    const int size = split.image_size();
    split.pixels.resize(static_cast<size_t>(kImages) * size);
    split.labels.resize(kImages);
    for (int image = 0; image < kImages; ++image) {
      uint8_t* pixels = split.pixels.data() + static_cast<size_t>(image) * size;
      pixels[0] = static_cast<uint8_t>(image & 0xff);
      pixels[1] = static_cast<uint8_t>(image >> 8);
      for (int j = 2; j < size; ++j) pixels[j] = static_cast<uint8_t>(image * 31 + j * 7);
      split.labels[image] = static_cast<uint8_t>(image % 10);
    }
    return split;
  }();
  return data;
}

// The slot memory a caller would own: K buffers of batch images each.
struct Slots {
  Slots(int count, int batch) {
    const size_t bytes = static_cast<size_t>(batch) * synthetic_data().image_size();
    for (int i = 0; i < count; ++i) storage.emplace_back(bytes);
    for (Bytes& slot : storage) pointers.push_back(slot.data());
  }
  std::vector<Bytes> storage;
  std::vector<uint8_t*> pointers;
};

// What a batch's slot must hold: the images order[span.first ..) one after another.
Bytes expected_gather(const std::vector<uint32_t>& order, BatchSpan span) {
  const vae::MnistSplit& data = synthetic_data();
  const size_t size = data.image_size();
  Bytes bytes;
  for (int row = 0; row < span.rows; ++row) {
    const uint8_t* image = data.pixels.data() + order[span.first + row] * size;
    bytes.insert(bytes.end(), image, image + size);
  }
  return bytes;
}

// Batch `index` of an epoch cut into batches of batch_size, holding `rows` images.
BatchSpan span_of(int index, int batch_size, int rows) {
  return {static_cast<uint32_t>(index) * static_cast<uint32_t>(batch_size), rows};
}

Bytes batch_bytes(const BatchFeeder::Batch& batch) {
  const size_t size = static_cast<size_t>(batch.rows) * synthetic_data().image_size();
  return Bytes(batch.pixels, batch.pixels + size);
}

std::vector<uint32_t> shuffled_order(uint32_t count, uint32_t seed) {
  std::vector<uint32_t> order(count);
  std::iota(order.begin(), order.end(), 0u);
  std::shuffle(order.begin(), order.end(), std::mt19937(seed));
  return order;
}

// Consumes one whole epoch, releasing each batch at once, and checks every batch against the plan.
void consume_and_check_epoch(BatchFeeder& feeder, const std::vector<uint32_t>& order,
                             int batch_size) {
  const auto count = static_cast<uint32_t>(order.size());
  const std::vector<BatchSpan> spans = vae::plan_batches(count, batch_size);
  for (size_t b = 0; b < spans.size(); ++b) {
    const std::optional<BatchFeeder::Batch> batch = feeder.next();
    ASSERT_TRUE(batch.has_value()) << "epoch ended early at batch " << b;
    EXPECT_EQ(batch->index, static_cast<int>(b));
    EXPECT_EQ(batch->rows, spans[b].rows);
    ASSERT_GE(batch->slot, 0);
    ASSERT_LT(batch->slot, feeder.slot_count());
    EXPECT_EQ(batch_bytes(*batch), expected_gather(order, spans[b])) << "batch " << b;
    feeder.release(batch->slot);
  }
  EXPECT_FALSE(feeder.next().has_value());
}

TEST(PlanBatches, CoversEveryPositionOnce) {
  auto as_pairs = [](const std::vector<BatchSpan>& spans) {
    std::vector<std::pair<uint32_t, int>> pairs;
    for (BatchSpan span : spans) pairs.emplace_back(span.first, span.rows);
    return pairs;
  };
  using Pairs = std::vector<std::pair<uint32_t, int>>;
  EXPECT_EQ(as_pairs(vae::plan_batches(10, 5)), (Pairs{{0, 5}, {5, 5}}));              // exact division
  EXPECT_EQ(as_pairs(vae::plan_batches(10, 4)), (Pairs{{0, 4}, {4, 4}, {8, 2}}));      // partial last
  EXPECT_EQ(as_pairs(vae::plan_batches(3, 8)), (Pairs{{0, 3}}));                       // batch > count
  EXPECT_TRUE(vae::plan_batches(0, 8).empty());                                        // count 0
  EXPECT_EQ(as_pairs(vae::plan_batches(3, 1)), (Pairs{{0, 1}, {1, 1}, {2, 1}}));       // batch 1
  EXPECT_EQ(vae::plan_batches(60000, 128).size(), 469u);
  EXPECT_THROW(vae::plan_batches(10, 0), vae::Error);
}

TEST(BatchFeeder, RejectsBadConstruction) {
  Slots slots(1, 4);
  EXPECT_THROW(BatchFeeder(synthetic_data(), {}, 4), vae::Error);
  EXPECT_THROW(BatchFeeder(synthetic_data(), {nullptr}, 4), vae::Error);
  EXPECT_THROW(BatchFeeder(synthetic_data(), slots.pointers, 0), vae::Error);
}

TEST(BatchFeeder, EveryBatchIsTheGatherOfTheOrder) {
  constexpr int kBatch = 64;  // 1000 = 15 * 64 + 40: a partial last batch every epoch
  for (int slot_count : {1, 2, 3}) {
    SCOPED_TRACE("K = " + std::to_string(slot_count));
    Slots slots(slot_count, kBatch);
    BatchFeeder feeder(synthetic_data(), slots.pointers, kBatch);
    EXPECT_EQ(feeder.slot_count(), slot_count);
    for (uint32_t epoch = 0; epoch < 3; ++epoch) {
      const std::vector<uint32_t> order = shuffled_order(kImages, 100 * slot_count + epoch);
      feeder.start_epoch(order);
      consume_and_check_epoch(feeder, order, kBatch);
    }
  }
}

TEST(BatchFeeder, PartialLastBatchHasTheRemainingRows) {
  Slots slots(2, 300);
  BatchFeeder feeder(synthetic_data(), slots.pointers, 300);
  const std::vector<uint32_t> order = shuffled_order(kImages, 7);
  feeder.start_epoch(order);
  std::vector<int> rows;
  while (std::optional<BatchFeeder::Batch> batch = feeder.next()) {
    rows.push_back(batch->rows);
    EXPECT_EQ(batch_bytes(*batch), expected_gather(order, span_of(batch->index, 300, batch->rows)));
    feeder.release(batch->slot);
  }
  EXPECT_EQ(rows, (std::vector<int>{300, 300, 300, 100}));

  // An epoch may cover a subset of the data, with repeats, shorter than one batch.
  const std::vector<uint32_t> few = {999, 0, 5, 5, 998};
  feeder.start_epoch(few);
  consume_and_check_epoch(feeder, few, 300);
}

TEST(BatchFeeder, NextIsEmptyAfterTheLastBatchAndTheNextEpochStarts) {
  Slots slots(2, 100);
  BatchFeeder feeder(synthetic_data(), slots.pointers, 100);
  EXPECT_FALSE(feeder.next().has_value());  // no epoch yet
  const std::vector<uint32_t> order = shuffled_order(250, 1);
  feeder.start_epoch(order);
  consume_and_check_epoch(feeder, order, 100);
  EXPECT_FALSE(feeder.next().has_value());  // stays empty
  feeder.start_epoch({});                   // an empty epoch ends at once
  EXPECT_FALSE(feeder.next().has_value());
  feeder.start_epoch(order);
  consume_and_check_epoch(feeder, order, 100);
}

TEST(BatchFeeder, StartEpochBeforeTheLastOneIsConsumedThrows) {
  Slots slots(2, 100);
  BatchFeeder feeder(synthetic_data(), slots.pointers, 100);
  const std::vector<uint32_t> order = shuffled_order(kImages, 2);
  feeder.start_epoch(order);
  EXPECT_THROW(feeder.start_epoch(order), vae::Error);  // nothing consumed yet
  std::optional<BatchFeeder::Batch> first = feeder.next();
  ASSERT_TRUE(first.has_value());
  EXPECT_THROW(feeder.start_epoch(order), vae::Error);  // partly consumed
  // The refused call changed nothing: the epoch in flight goes on.
  EXPECT_EQ(batch_bytes(*first), expected_gather(order, {0, 100}));
  feeder.release(first->slot);
  for (int b = 1; b < 10; ++b) {
    std::optional<BatchFeeder::Batch> batch = feeder.next();
    ASSERT_TRUE(batch.has_value());
    EXPECT_EQ(batch_bytes(*batch), expected_gather(order, span_of(b, 100, 100)));
    feeder.release(batch->slot);
  }
  EXPECT_FALSE(feeder.next().has_value());
  feeder.start_epoch(order);
  consume_and_check_epoch(feeder, order, 100);
}

TEST(BatchFeeder, OutOfRangeIndexThrowsUpFront) {
  Slots slots(2, 10);
  BatchFeeder feeder(synthetic_data(), slots.pointers, 10);
  std::vector<uint32_t> order = shuffled_order(kImages, 3);
  order[517] = kImages;
  try {
    feeder.start_epoch(order);
    FAIL() << "start_epoch accepted index " << kImages;
  } catch (const vae::Error& error) {
    EXPECT_NE(std::string(error.what()).find("1000"), std::string::npos) << error.what();
  }
  EXPECT_FALSE(feeder.next().has_value());  // no epoch began
  order[517] = 517;
  feeder.start_epoch(order);
  consume_and_check_epoch(feeder, order, 10);
}

TEST(BatchFeeder, ReleaseOfASlotNotInUseThrows) {
  Slots slots(2, 10);
  BatchFeeder feeder(synthetic_data(), slots.pointers, 10);
  EXPECT_THROW(feeder.release(0), vae::Error);  // never handed out
  EXPECT_THROW(feeder.release(2), vae::Error);  // no such slot
  feeder.start_epoch(shuffled_order(30, 4));
  std::optional<BatchFeeder::Batch> batch = feeder.next();
  ASSERT_TRUE(batch.has_value());
  feeder.release(batch->slot);
  EXPECT_THROW(feeder.release(batch->slot), vae::Error);  // twice
  while ((batch = feeder.next())) feeder.release(batch->slot);
}

TEST(BatchFeeder, AHeldSlotIsNeverOverwritten) {
  Slots slots(2, 10);
  BatchFeeder feeder(synthetic_data(), slots.pointers, 10);
  const std::vector<uint32_t> order = shuffled_order(100, 5);
  feeder.start_epoch(order);

  // Hold both slots at once: the producer has nowhere to write and must wait.
  std::optional<BatchFeeder::Batch> first = feeder.next(), second = feeder.next();
  ASSERT_TRUE(first && second);
  EXPECT_NE(first->slot, second->slot);
  std::this_thread::sleep_for(std::chrono::milliseconds(3));
  EXPECT_EQ(batch_bytes(*first), expected_gather(order, {0, 10}));
  EXPECT_EQ(batch_bytes(*second), expected_gather(order, {10, 10}));
  EXPECT_THROW(feeder.next(), vae::Error);  // would wait forever: no slot can be filled
  feeder.release(first->slot);

  // Then hold each batch a moment while the producer fills the other slot.
  std::optional<BatchFeeder::Batch> held = second;
  for (int b = 2; b < 10; ++b) {
    std::optional<BatchFeeder::Batch> batch = feeder.next();
    ASSERT_TRUE(batch.has_value());
    EXPECT_NE(batch->slot, held->slot);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_EQ(batch_bytes(*held), expected_gather(order, span_of(held->index, 10, 10)));
    feeder.release(held->slot);
    held = batch;
  }
  EXPECT_EQ(batch_bytes(*held), expected_gather(order, {90, 10}));
  feeder.release(held->slot);
  EXPECT_FALSE(feeder.next().has_value());
}

TEST(BatchFeeder, OutOfOrderReleaseRefillsInReleaseOrder) {
  Slots slots(3, 10);
  BatchFeeder feeder(synthetic_data(), slots.pointers, 10);
  const std::vector<uint32_t> order = shuffled_order(60, 6);
  feeder.start_epoch(order);
  std::vector<BatchFeeder::Batch> held;
  for (int b = 0; b < 3; ++b) held.push_back(*feeder.next());
  EXPECT_EQ(held[0].slot, 0);
  EXPECT_EQ(held[1].slot, 1);
  EXPECT_EQ(held[2].slot, 2);
  for (int slot : {2, 0, 1}) feeder.release(slot);
  for (int b = 3; b < 6; ++b) {
    std::optional<BatchFeeder::Batch> batch = feeder.next();
    ASSERT_TRUE(batch.has_value());
    EXPECT_EQ(batch->slot, (std::vector<int>{2, 0, 1})[b - 3]);  // longest released first
    EXPECT_EQ(batch_bytes(*batch), expected_gather(order, span_of(b, 10, 10)));
    feeder.release(batch->slot);
  }
  EXPECT_FALSE(feeder.next().has_value());
}

TEST(BatchFeeder, WaiterRunsOnceBeforeItsSlotIsOverwritten) {
  constexpr int kSlots = 2, kBatch = 10, kBatches = 10, kEpochs = 2;
  Slots slots(kSlots, kBatch);
  auto feeder = std::make_unique<BatchFeeder>(synthetic_data(), slots.pointers, kBatch);
  // Per batch of the run: how often its waiter ran, and whether its slot still held it then.
  std::vector<std::atomic<int>> calls(kBatches * kEpochs);
  std::atomic<bool> slot_intact_at_wait{true};
  std::vector<int> last_in_slot(kSlots, -1);

  for (int epoch = 0; epoch < kEpochs; ++epoch) {
    const std::vector<uint32_t> order = shuffled_order(kBatches * kBatch, 10 + epoch);
    feeder->start_epoch(order);
    while (std::optional<BatchFeeder::Batch> batch = feeder->next()) {
      const int run_batch = epoch * kBatches + batch->index;
      // The slot's previous batch was released with a waiter; it ran before this fill.
      if (last_in_slot[batch->slot] >= 0) {
        EXPECT_EQ(calls[last_in_slot[batch->slot]].load(), 1);
      }
      last_in_slot[batch->slot] = run_batch;
      EXPECT_EQ(calls[run_batch].load(), 0);
      const Bytes expected = expected_gather(order, span_of(batch->index, kBatch, batch->rows));
      feeder->release(batch->slot, [&, released = *batch, expected, run_batch] {
        if (batch_bytes(released) != expected) slot_intact_at_wait = false;
        ++calls[run_batch];
      });
    }
  }
  EXPECT_TRUE(slot_intact_at_wait);
  // Every batch but the last K had its slot refilled, so its waiter ran exactly once; the last K
  // were never overwritten, so theirs are still pending and are dropped with the feeder.
  feeder.reset();
  for (int b = 0; b < kBatches * kEpochs; ++b)
    EXPECT_EQ(calls[b].load(), b < kBatches * kEpochs - kSlots ? 1 : 0) << "batch " << b;
}

TEST(BatchFeeder, ProducerWaitsForABlockingWaiter) {
  // K = 1 and a waiter that blocks until the test opens a gate: a copy still in flight.
  Slots slots(1, 10);
  BatchFeeder feeder(synthetic_data(), slots.pointers, 10);
  const std::vector<uint32_t> order = shuffled_order(20, 11);
  feeder.start_epoch(order);
  std::optional<BatchFeeder::Batch> first = feeder.next();
  ASSERT_TRUE(first.has_value());
  std::atomic<bool> gate_open{false}, waiter_entered{false};
  feeder.release(first->slot, [&] {
    waiter_entered = true;
    waiter_entered.notify_one();
    gate_open.wait(false);
  });
  waiter_entered.wait(false);
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_EQ(batch_bytes(*first), expected_gather(order, {0, 10}));  // still batch 0
  gate_open = true;
  gate_open.notify_one();
  std::optional<BatchFeeder::Batch> second = feeder.next();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(batch_bytes(*second), expected_gather(order, {10, 10}));
  feeder.release(second->slot);
  EXPECT_FALSE(feeder.next().has_value());
}

TEST(BatchFeeder, AFailingWaiterSurfacesFromNext) {
  Slots slots(1, 10);
  BatchFeeder feeder(synthetic_data(), slots.pointers, 10);
  feeder.start_epoch(shuffled_order(50, 12));
  std::optional<BatchFeeder::Batch> first = feeder.next();
  ASSERT_TRUE(first.has_value());
  feeder.release(first->slot, [] { throw std::runtime_error("copy failed: illegal address"); });
  try {
    feeder.next();
    FAIL() << "next() did not throw";
  } catch (const vae::Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("copy failed: illegal address"), std::string::npos) << message;
  }
  EXPECT_THROW(feeder.next(), vae::Error);  // the failure stays
  EXPECT_THROW(feeder.start_epoch({1, 2}), vae::Error);
}

TEST(BatchFeeder, AWaiterThrowingVaeErrorKeepsItsType) {
  Slots slots(1, 10);
  BatchFeeder feeder(synthetic_data(), slots.pointers, 10);
  feeder.start_epoch(shuffled_order(20, 13));
  std::optional<BatchFeeder::Batch> first = feeder.next();
  ASSERT_TRUE(first.has_value());
  feeder.release(first->slot, [] { throw vae::UsageError("exact message"); });
  try {
    feeder.next();
    FAIL() << "next() did not throw";
  } catch (const vae::UsageError& error) {
    EXPECT_STREQ(error.what(), "exact message");
  }
}

TEST(BatchFeeder, DestroyingMidEpochReturnsPromptly) {
  Slots slots(2, 10);
  const auto begin = std::chrono::steady_clock::now();
  {
    BatchFeeder feeder(synthetic_data(), slots.pointers, 10);
    feeder.start_epoch(shuffled_order(100, 14));
    // Take 2 of 10 batches and release neither: the producer is blocked waiting for a free slot.
    ASSERT_TRUE(feeder.next().has_value());
    ASSERT_TRUE(feeder.next().has_value());
  }
  {
    BatchFeeder idle(synthetic_data(), slots.pointers, 10);  // never given an epoch
  }
  {
    BatchFeeder unconsumed(synthetic_data(), slots.pointers, 10);  // epoch begun, nothing taken
    unconsumed.start_epoch(shuffled_order(100, 15));
  }
  // Generous, so a loaded machine never fails it; a hang would never get here at all.
  EXPECT_LT(std::chrono::steady_clock::now() - begin, std::chrono::seconds(2));
}

}  // namespace
