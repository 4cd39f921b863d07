// Numeric flag values, parsed exactly: the whole text is one decimal number that fits the setting's
// type and its documented range, or the flag is refused. CLI11's own conversion takes 0x10 and 010
// (octal) for integers and wraps -1 into an unsigned seed, so the CLI reads every number as text and
// converts it here.
#pragma once

#include <string>

namespace vae {

template <typename T>
struct IntegerRange {
  T min, max;
};

// [min, max], or (min, max] with min_excluded.
struct RealRange {
  double min, max;
  bool min_excluded = false;
};

// Throws vae::UsageError "FLAG: VALUE is outside MIN..MAX" (or "outside (MIN, MAX]" for reals) when
// the value is not in the range; NaN is outside every range.
template <typename T>
void check_range(const std::string& flag, T value, IntegerRange<T> range);
void check_range(const std::string& flag, double value, RealRange range);

// An integer of T's type in the range: an optional '-' (signed types only) and decimal digits, making
// up the whole text. Throws vae::UsageError: "FLAG: 'TEXT' is not a whole number", or the range's
// message with the text as given (a value too large for T is outside the range too).
// Instantiated for int and uint64_t.
template <typename T>
T parse_integer_flag(const std::string& flag, const std::string& text, IntegerRange<T> range);

// A real number in the range, in decimal or exponent notation (1e-3), the whole text. nan, inf and
// values beyond a double are refused. Throws vae::UsageError "FLAG: 'TEXT' is not a number" or the
// range's message.
double parse_real_flag(const std::string& flag, const std::string& text, RealRange range);

// As parse_real_flag, for a setting held in a float: a nonzero value too small for a normal float is
// refused rather than rounded to zero (the range keeps large ones out).
float parse_float_flag(const std::string& flag, const std::string& text, RealRange range);

}  // namespace vae
