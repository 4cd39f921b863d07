// The playground's field checks. Messages start with the field's name as the request spells it
// ("images[1]", "z[3]") so a client can find its mistake without reading our code.
#include "request_fields.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>

namespace vae {
namespace {

std::string type_of(const nlohmann::json& value) { return value.type_name(); }

}  // namespace

const nlohmann::json& required_field(const nlohmann::json& request, const std::string& field, const std::string& parent) {
  if (!request.is_object())
    throw RequestError(fmt::format("{}: a JSON object expected, got {}", parent.empty() ? "request" : parent, type_of(request)));
  const auto it = request.find(field);
  if (it == request.end()) throw RequestError(fmt::format("{}{}: missing", parent.empty() ? "" : parent + ".", field));
  return *it;
}

int64_t integer_field(const nlohmann::json& value, const std::string& field, int64_t lo, int64_t hi) {
  if (value.is_number_integer()) {
    if (value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(hi))
      throw RequestError(fmt::format("{}: {} is not between {} and {}", field, value.get<uint64_t>(), lo, hi));
    const int64_t n = value.get<int64_t>();
    if (n < lo || n > hi) throw RequestError(fmt::format("{}: {} is not between {} and {}", field, n, lo, hi));
    return n;
  }
  if (value.is_number_float()) {
    const double d = value.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && d >= static_cast<double>(lo) && d <= static_cast<double>(hi))
      return static_cast<int64_t>(d);
    throw RequestError(fmt::format("{}: {} is not an integer between {} and {}", field, value.dump(), lo, hi));
  }
  throw RequestError(fmt::format("{}: an integer expected, got {}", field, type_of(value)));
}

uint64_t unsigned_field(const nlohmann::json& value, const std::string& field) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer()) {
    if (value.get<int64_t>() < 0) throw RequestError(fmt::format("{}: {} is negative", field, value.get<int64_t>()));
    return value.get<uint64_t>();
  }
  return static_cast<uint64_t>(integer_field(value, field, 0, int64_t{1} << 53));  // an integral float
}

std::string choice_field(const nlohmann::json& value, const std::string& field, const std::vector<std::string>& choices) {
  if (!value.is_string()) throw RequestError(fmt::format("{}: a string expected, got {}", field, type_of(value)));
  const std::string text = value.get<std::string>();
  for (const std::string& choice : choices)
    if (text == choice) return text;
  throw RequestError(fmt::format("{}: \"{}\" is not one of {}", field, text, fmt::join(choices, ", ")));
}

std::vector<float> numbers_field(const nlohmann::json& value, const std::string& field, size_t count, double lo,
                                 double hi) {
  if (!value.is_array()) throw RequestError(fmt::format("{}: an array expected, got {}", field, type_of(value)));
  if (value.size() != count)
    throw RequestError(fmt::format("{}: {} values, {} expected", field, value.size(), count));
  std::vector<float> numbers(count);
  for (size_t i = 0; i < count; ++i) {
    const nlohmann::json& v = value[i];
    if (!v.is_number()) throw RequestError(fmt::format("{}[{}]: a number expected, got {}", field, i, type_of(v)));
    const double d = v.get<double>();
    const float f = static_cast<float>(d);
    if (!std::isfinite(f)) throw RequestError(fmt::format("{}[{}]: {} is not a finite float", field, i, d));
    if (d < lo || d > hi) throw RequestError(fmt::format("{}[{}]: {} is not between {} and {}", field, i, d, lo, hi));
    numbers[i] = f;
  }
  return numbers;
}

}  // namespace vae
