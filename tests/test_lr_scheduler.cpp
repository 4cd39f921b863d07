// ReduceLROnPlateau on hand-worked sequences: when the patience runs out, what counts as an
// improvement under the relative threshold, cooldown, the min_lr floor and the eps rule, NaN
// metrics, and a resume from state() that continues exactly. plateau_parity.py checks PyTorch itself.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "vae/error.hpp"
#include "vae/lr_scheduler.hpp"

namespace vae {
namespace {

// The lr after each step.
std::vector<double> run(ReduceLROnPlateau& s, const std::vector<double>& metrics) {
  std::vector<double> lrs;
  for (double m : metrics) lrs.push_back(s.step(m));
  return lrs;
}

PlateauHyper hyper(double factor, int patience) {
  PlateauHyper h;
  h.factor = factor;
  h.patience = patience;
  return h;
}

TEST(ReduceLROnPlateau, DefaultsArePyTorchs) {
  const PlateauHyper h;
  EXPECT_EQ(h.factor, 0.1);
  EXPECT_EQ(h.patience, 10);
  EXPECT_EQ(h.threshold, 1e-4);
  EXPECT_EQ(h.cooldown, 0);
  EXPECT_EQ(h.min_lr, 0.0);
  EXPECT_EQ(h.eps, 1e-8);
  ReduceLROnPlateau s(h, 1e-3);
  EXPECT_EQ(s.state().best, std::numeric_limits<double>::infinity());
  EXPECT_EQ(s.state().last_epoch, 0);
  // One improvement, then 10 bad epochs are tolerated and the 11th reduces.
  s.step(1.0);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(s.step(1.0), 1e-3) << i;
  EXPECT_EQ(s.step(1.0), 1e-3 * 0.1);
}

// patience 2: the third bad epoch in a row reduces, and the count starts again after it.
TEST(ReduceLROnPlateau, ReducesAfterPatiencePlusOneBadEpochs) {
  ReduceLROnPlateau s(hyper(0.5, 2), 1.0);
  EXPECT_EQ(run(s, {1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0}),
            (std::vector<double>{1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25}));
  EXPECT_EQ(s.state().num_bad_epochs, 0);
  EXPECT_EQ(s.state().last_epoch, 7);
  EXPECT_EQ(s.state().best, 1.0);
  // An improvement resets the count: two bad, a better one, two bad again: no reduction.
  EXPECT_EQ(run(s, {1.0, 1.0, 0.5, 0.6, 0.6}), (std::vector<double>(5, 0.25)));
  EXPECT_EQ(s.state().num_bad_epochs, 2);
}

// 'rel': better means metric < best * (1 - threshold), strictly.
TEST(ReduceLROnPlateau, ImprovementIsRelativeToTheThreshold) {
  PlateauHyper h = hyper(0.5, 0);
  h.threshold = 0.5;  // best * 0.5 is exact
  ReduceLROnPlateau s(h, 1.0);
  EXPECT_EQ(s.step(1.0), 1.0);  // anything beats +inf
  EXPECT_EQ(s.step(0.6), 0.5);  // lower, but not below 0.5: a bad epoch, and patience 0 reduces
  EXPECT_EQ(s.state().best, 1.0);
  EXPECT_EQ(s.step(0.5), 0.25);  // equal to best * 0.5 is not below it
  EXPECT_EQ(s.step(0.4999), 0.25);
  EXPECT_EQ(s.state().best, 0.4999);
  // threshold 0: any decrease counts, equality does not.
  h.threshold = 0.0;
  ReduceLROnPlateau t(h, 1.0);
  EXPECT_EQ(run(t, {3.0, std::nextafter(3.0, 0.0), std::nextafter(3.0, 0.0)}), (std::vector<double>{1.0, 1.0, 0.5}));
}

// cooldown 2 after each reduction: the two epochs after it count no bad epochs, whatever the metric.
TEST(ReduceLROnPlateau, CooldownIgnoresBadEpochs) {
  PlateauHyper h = hyper(0.5, 0);
  h.cooldown = 2;
  ReduceLROnPlateau s(h, 1.0);
  EXPECT_EQ(run(s, {1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0}),
            (std::vector<double>{1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125}));
  // An improvement during cooldown still becomes the best.
  ReduceLROnPlateau t(h, 1.0);
  run(t, {1.0, 2.0, 0.1});
  EXPECT_EQ(t.state().best, 0.1);
  EXPECT_EQ(t.state().cooldown_counter, 1);
}

TEST(ReduceLROnPlateau, MinLrIsAFloorAndReductionsBelowEpsAreSkipped) {
  PlateauHyper h = hyper(0.1, 0);
  h.min_lr = 0.05;
  ReduceLROnPlateau s(h, 1.0);
  // 1 -> 0.1 -> max(0.01, 0.05) = 0.05, then no change (the reduction would be 0).
  EXPECT_EQ(run(s, {1.0, 1.0, 1.0, 1.0, 1.0}), (std::vector<double>{1.0, 1.0 * 0.1, 0.05, 0.05, 0.05}));

  // eps: from 1e-7 by half is a change of 5e-8: made with eps 1e-8, skipped with eps 1e-7.
  PlateauHyper e = hyper(0.5, 0);
  ReduceLROnPlateau made(e, 1e-7);
  EXPECT_EQ(run(made, {1.0, 1.0}), (std::vector<double>{1e-7, 1e-7 * 0.5}));
  e.eps = 1e-7;
  ReduceLROnPlateau skipped(e, 1e-7);
  EXPECT_EQ(run(skipped, {1.0, 1.0, 1.0}), (std::vector<double>(3, 1e-7)));
  EXPECT_EQ(skipped.state().num_bad_epochs, 0);  // the counters reset even when the lr stays
}

// NaN compares false with everything: a bad epoch, never the best.
TEST(ReduceLROnPlateau, NanMetricIsABadEpoch) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  ReduceLROnPlateau s(hyper(0.5, 1), 1.0);
  EXPECT_EQ(run(s, {nan, nan, 3.0, nan, nan}), (std::vector<double>{1.0, 0.5, 0.5, 0.5, 0.25}));
  EXPECT_EQ(s.state().best, 3.0);
}

// A schedule rebuilt from state() at any point gives the same rates and states as the one that ran on.
TEST(ReduceLROnPlateau, RestoredFromStateContinuesIdentically) {
  PlateauHyper h = hyper(0.3, 2);
  h.cooldown = 1;
  h.min_lr = 1e-4;
  h.threshold = 0.01;
  const std::vector<double> metrics = {5.0, 4.0, 3.99, 3.98, 3.97, 3.0, 3.0, 3.0, 3.0, 2.0,
                                       2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0};
  for (size_t cut = 0; cut <= metrics.size(); ++cut) {
    ReduceLROnPlateau whole(h, 0.1);
    ReduceLROnPlateau first(h, 0.1);
    for (size_t i = 0; i < cut; ++i) {
      whole.step(metrics[i]);
      first.step(metrics[i]);
    }
    const PlateauState saved = first.state();  // a copy, as a checkpoint holds it
    ReduceLROnPlateau resumed(h, saved);
    for (size_t i = cut; i < metrics.size(); ++i) {
      ASSERT_EQ(resumed.step(metrics[i]), whole.step(metrics[i])) << "cut " << cut << " step " << i;
      const PlateauState& a = resumed.state();
      const PlateauState& b = whole.state();
      ASSERT_EQ(a.best, b.best);
      ASSERT_EQ(a.num_bad_epochs, b.num_bad_epochs);
      ASSERT_EQ(a.cooldown_counter, b.cooldown_counter);
      ASSERT_EQ(a.last_epoch, b.last_epoch);
    }
  }
  // The sequence did reduce more than once (so the cuts cross reductions and cooldowns).
  ReduceLROnPlateau s(h, 0.1);
  EXPECT_LT(run(s, metrics).back(), 0.1 * 0.3);
}

TEST(ReduceLROnPlateau, BadSettingsAreUsageErrorsNamingThem) {
  struct Case {
    const char* setting;
    PlateauHyper h;
    double lr;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto with = [](auto change) {
    PlateauHyper h;
    change(h);
    return h;
  };
  const Case cases[] = {
      {"factor", with([](PlateauHyper& h) { h.factor = 1.0; }), 1.0},
      {"factor", with([](PlateauHyper& h) { h.factor = 0.0; }), 1.0},
      {"factor", with([&](PlateauHyper& h) { h.factor = nan; }), 1.0},
      {"patience", with([](PlateauHyper& h) { h.patience = -1; }), 1.0},
      {"threshold", with([](PlateauHyper& h) { h.threshold = -1e-4; }), 1.0},
      {"threshold", with([](PlateauHyper& h) { h.threshold = 1.0; }), 1.0},
      {"cooldown", with([](PlateauHyper& h) { h.cooldown = -1; }), 1.0},
      {"min_lr", with([](PlateauHyper& h) { h.min_lr = -1e-6; }), 1.0},
      {"eps", with([&](PlateauHyper& h) { h.eps = nan; }), 1.0},
      {"lr", PlateauHyper{}, 0.0},
      {"lr", PlateauHyper{}, std::numeric_limits<double>::infinity()},
  };
  for (const Case& c : cases) {
    try {
      ReduceLROnPlateau s(c.h, c.lr);
      ADD_FAILURE() << c.setting << " accepted";
    } catch (const UsageError& e) {
      EXPECT_THAT(e.what(), testing::HasSubstr(std::string("ReduceLROnPlateau ") + c.setting + ":")) << e.what();
    }
  }
  PlateauState bad;
  bad.lr = 1.0;
  bad.num_bad_epochs = -1;
  EXPECT_THROW(ReduceLROnPlateau(PlateauHyper{}, bad), UsageError);
  bad.num_bad_epochs = 0;
  bad.best = nan;
  EXPECT_THROW(ReduceLROnPlateau(PlateauHyper{}, bad), UsageError);
}

}  // namespace
}  // namespace vae
