// Exact parsing of numeric flags with std::from_chars: decimal only, no leading space or '+', the
// whole text consumed, and a value that does not fit its type reported, never clamped or wrapped.
#include "vae/flag_values.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "vae/error.hpp"

namespace vae {
namespace {

std::string describe(const RealRange& range) {
  return fmt::format("{}{}, {}]", range.min_excluded ? "(" : "[", range.min, range.max);
}

[[noreturn]] void outside(const std::string& flag, const std::string& value, const std::string& range) {
  throw UsageError(fmt::format("{}: {} is outside {}", flag, value, range));
}

bool inside(double value, const RealRange& range) {
  const bool above_min = range.min_excluded ? value > range.min : value >= range.min;
  return above_min && value <= range.max;  // false for NaN
}

}  // namespace

template <typename T>
void check_range(const std::string& flag, T value, IntegerRange<T> range) {
  if (value < range.min || value > range.max)
    outside(flag, fmt::format("{}", value), fmt::format("{}..{}", range.min, range.max));
}

void check_range(const std::string& flag, double value, RealRange range) {
  if (!inside(value, range)) outside(flag, fmt::format("{}", value), describe(range));
}

template <typename T>
T parse_integer_flag(const std::string& flag, const std::string& text, IntegerRange<T> range) {
  T value{};
  const char* last = text.data() + text.size();
  const auto [end, err] = std::from_chars(text.data(), last, value);
  const std::string bounds = fmt::format("{}..{}", range.min, range.max);
  if (err == std::errc::result_out_of_range && end == last) outside(flag, text, bounds);
  // from_chars refuses a '-' for an unsigned type; -5 is still a whole number, only out of range
  // (and -0 is 0, as it is for the signed types).
  if (std::is_unsigned_v<T> && text.size() > 1 && text[0] == '-' &&
      text.find_first_not_of("0123456789", 1) == std::string::npos) {
    if (text.find_first_not_of('0', 1) != std::string::npos) outside(flag, text, bounds);
    value = 0;
  } else if (text.empty() || err != std::errc() || end != last) {
    throw UsageError(fmt::format("{}: '{}' is not a whole number", flag, text));
  }
  if (value < range.min || value > range.max) outside(flag, text, bounds);
  return value;
}

double parse_real_flag(const std::string& flag, const std::string& text, RealRange range) {
  double value = 0;
  const char* last = text.data() + text.size();
  const auto [end, err] = std::from_chars(text.data(), last, value);
  if (err == std::errc::result_out_of_range && end == last) outside(flag, text, describe(range));
  if (text.empty() || err != std::errc() || end != last)
    throw UsageError(fmt::format("{}: '{}' is not a number", flag, text));
  if (!inside(value, range)) outside(flag, text, describe(range));
  return value;
}

float parse_float_flag(const std::string& flag, const std::string& text, RealRange range) {
  const double value = parse_real_flag(flag, text, range);
  if (value != 0 && std::abs(value) < std::numeric_limits<float>::min())
    throw UsageError(fmt::format("{}: {} is too small for a float (nonzero values start at {})", flag, text,
                                 std::numeric_limits<float>::min()));
  return static_cast<float>(value);
}

template void check_range<int>(const std::string&, int, IntegerRange<int>);
template void check_range<uint64_t>(const std::string&, uint64_t, IntegerRange<uint64_t>);
template int parse_integer_flag<int>(const std::string&, const std::string&, IntegerRange<int>);
template uint64_t parse_integer_flag<uint64_t>(const std::string&, const std::string&, IntegerRange<uint64_t>);

}  // namespace vae
