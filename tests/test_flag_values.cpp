// Numeric flags are parsed exactly and range-checked: a value that does not fit its type or its
// documented range is an error naming the flag, never clamped, wrapped or read in another base.
// Every numeric flag of the binary is tried with each kind of bad value.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

#include "test_support.hpp"
#include "vae/cli.hpp"
#include "vae/error.hpp"
#include "vae/flag_values.hpp"

namespace vae {
namespace {

using testing::HasSubstr;

// The message of the UsageError that f throws, or "" when it throws none.
template <typename F>
std::string usage_error_of(F&& f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

constexpr IntegerRange<int> kAnyInt{std::numeric_limits<int>::min(), std::numeric_limits<int>::max()};
constexpr IntegerRange<uint64_t> kAnyU64{0, UINT64_MAX};

TEST(FlagValues, IntegersAreDecimalAndWhole) {
  EXPECT_EQ(parse_integer_flag("--n", "42", kAnyInt), 42);
  EXPECT_EQ(parse_integer_flag("--n", "-7", kAnyInt), -7);
  EXPECT_EQ(parse_integer_flag("--n", "010", kAnyInt), 10);  // not octal 8, as strtol's base 0 would read it
  EXPECT_EQ(parse_integer_flag("--n", "2147483647", kAnyInt), 2147483647);
  EXPECT_EQ(parse_integer_flag("--n", "18446744073709551615", kAnyU64), UINT64_MAX);
  EXPECT_EQ(parse_integer_flag("--n", "-0", kAnyU64), 0u);
  for (const char* junk : {"", "12abc", "0x10", "0b1", "1e3", "1.0", "1.5", " 5", "5 ", "+5", "-", "abc", "1,2"})
    EXPECT_EQ(usage_error_of([&] { parse_integer_flag("--n", junk, kAnyInt); }),
              std::string("--n: '") + junk + "' is not a whole number")
        << junk;
}

TEST(FlagValues, IntegersThatDoNotFitAreOutOfRangeNotWrapped) {
  EXPECT_EQ(usage_error_of([] { parse_integer_flag("--n", "2147483648", kAnyInt); }),
            "--n: 2147483648 is outside -2147483648..2147483647");
  EXPECT_EQ(usage_error_of([] { parse_integer_flag("--seed", "18446744073709551616", kAnyU64); }),
            "--seed: 18446744073709551616 is outside 0..18446744073709551615");
  EXPECT_EQ(usage_error_of([] { parse_integer_flag("--seed", "-1", kAnyU64); }),
            "--seed: -1 is outside 0..18446744073709551615");
  EXPECT_EQ(usage_error_of([] { parse_integer_flag("--batch", "0", IntegerRange<int>{1, 65536}); }),
            "--batch: 0 is outside 1..65536");
  EXPECT_EQ(usage_error_of([] { parse_integer_flag("--batch", "99999999999", IntegerRange<int>{1, 65536}); }),
            "--batch: 99999999999 is outside 1..65536");
}

TEST(FlagValues, RealsAreFiniteAndInRange) {
  const RealRange lr{0.0, 10.0, true};
  EXPECT_DOUBLE_EQ(parse_real_flag("--lr", "1e-3", lr), 1e-3);
  EXPECT_DOUBLE_EQ(parse_real_flag("--lr", ".5", lr), 0.5);
  EXPECT_DOUBLE_EQ(parse_real_flag("--lr", "10", lr), 10.0);
  for (const char* bad : {"0", "-1", "10.5", "nan", "inf", "-inf", "infinity", "1e400", "1e-400"})
    EXPECT_EQ(usage_error_of([&] { parse_real_flag("--lr", bad, lr); }), std::string("--lr: ") + bad + " is outside (0, 10]")
        << bad;
  for (const char* junk : {"", "abc", "1e", "0x1p3", "1.0.0", " 1", "1 ", "+1", "1e-3x"})
    EXPECT_EQ(usage_error_of([&] { parse_real_flag("--lr", junk, lr); }), std::string("--lr: '") + junk + "' is not a number")
        << junk;
  EXPECT_EQ(parse_real_flag("--beta", "0", RealRange{0.0, 1e6}), 0.0);  // a closed end is inside
}

TEST(FlagValues, AFloatSettingRefusesWhatWouldRoundToZero) {
  const RealRange beta{0.0, 1e6};
  EXPECT_FLOAT_EQ(parse_float_flag("--beta", "1e-30", beta), 1e-30f);
  EXPECT_THAT(usage_error_of([&] { parse_float_flag("--beta", "1e-50", beta); }),
              HasSubstr("--beta: 1e-50 is too small for a float"));
  EXPECT_EQ(usage_error_of([&] { parse_float_flag("--beta", "1e40", beta); }), "--beta: 1e40 is outside [0, 1000000]");
}

TEST(FlagValues, DefaultsParseBackToThemselves) {
  const char* argv[] = {"vae_cuda", "--train", "dir"};
  const CommandLine c = parse_command_line(3, argv);
  ASSERT_FALSE(c.exit_code.has_value());
  const TrainConfig defaults;
  EXPECT_EQ(c.config.adam.lr, defaults.adam.lr);
  EXPECT_EQ(c.config.model.beta, defaults.model.beta);
  EXPECT_EQ(c.config.seed, defaults.seed);
  EXPECT_EQ(c.config.adam.weight_decay, defaults.adam.weight_decay);
  EXPECT_EQ(c.config.checkpoint_every, defaults.checkpoint_every);
}

TEST(FlagValues, TheExtremesOfEachRangeAreAccepted) {
  const char* argv[] = {"vae_cuda", "--train", "dir", "--epochs", "1000000", "--batch", "65536", "--lr", "10",
                        "--hidden", "65536,1", "--latent", "1", "--beta", "0", "--seed", "18446744073709551615",
                        "--weight-decay", "1", "--checkpoint-every", "1000000"};
  const CommandLine c = parse_command_line(static_cast<int>(std::size(argv)), argv);
  ASSERT_FALSE(c.exit_code.has_value());
  EXPECT_EQ(c.config.epochs, 1000000);
  EXPECT_EQ(c.config.batch, 65536);
  EXPECT_EQ(c.config.seed, UINT64_MAX);
  EXPECT_EQ(c.config.model.hidden, (std::vector<int>{65536, 1}));
  EXPECT_EQ(c.config.checkpoint_every, 1000000);
}

// Through the binary: each numeric flag with each kind of bad value exits 2 with one line that
// names the flag and points to --help.
TEST(FlagValues, EveryNumericFlagRefusesEveryKindOfBadValue) {
  struct Case {
    const char* flag;
    std::vector<const char*> values;
  };
  const Case cases[] = {
      {"--epochs", {"0", "-1", "1000001", "2147483648", "99999999999", "12abc", "1.5", "0x10", "1e3", "nan"}},
      {"--batch", {"0", "-4", "65537", "99999999999", "12abc", "1.5", "0x10"}},
      {"--checkpoint-every", {"-1", "1000001", "99999999999", "abc"}},
      {"--latent", {"0", "-2", "65537", "4294967297", "2x"}},
      {"--hidden", {"0", "65537", "99999999999", "400,x", "-3", "400,"}},
      {"--seed", {"-1", "18446744073709551616", "99999999999999999999999", "1.5", "0x10", "banana", "1e3"}},
      {"--lr", {"0", "-1e-3", "10.5", "nan", "inf", "-inf", "1e400", "1e-400", "abc", "1e-3x"}},
      {"--beta", {"-1", "1e7", "nan", "inf", "1e40", "1e-50", "x"}},
      {"--weight-decay", {"-0.1", "1.5", "nan", "inf", "1e400", "junk"}},
  };
  for (const Case& c : cases)
    for (const char* value : c.values) {
      const auto r = testing_support::run_process(VAE_CLI_PATH, std::string("--train d ") + c.flag + " '" + value + "'");
      const std::string what = std::string(c.flag) + " " + value;
      EXPECT_EQ(r.exit_code, 2) << what << "\n" << r.output;
      EXPECT_EQ(r.output.rfind(std::string("vae_cuda: ") + c.flag + ": ", 0), 0u) << what << "\n" << r.output;
      EXPECT_THAT(r.output, testing::EndsWith(" (see --help)\n")) << what;
      EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << what << "\n" << r.output;
    }
  // --sample's own seed too.
  const auto r = testing_support::run_process(VAE_CLI_PATH, "--sample c --seed 18446744073709551616");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--seed: 18446744073709551616 is outside 0..18446744073709551615 (see --help)"));
}

}  // namespace
}  // namespace vae
