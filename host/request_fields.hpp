// Reading the fields of a playground request (parsed JSON) with one check each: every bad value is a
// RequestError whose one-line message names the field, which the handlers turn into a 400.
#pragma once

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vae {

// A client's mistake: a missing, mistyped or out-of-range field. Not a vae::Error, so that an
// engine failure behind a good request is never reported as the client's fault.
class RequestError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// request[field], which must exist; request must be a JSON object. parent names request in messages
// when it is itself a field ("canvas" gives "canvas.width: missing"); empty for the whole request.
const nlohmann::json& required_field(const nlohmann::json& request, const std::string& field,
                                     const std::string& parent = "");

// An integer (a JSON number with no fractional part; not a bool) on [lo, hi].
int64_t integer_field(const nlohmann::json& value, const std::string& field, int64_t lo, int64_t hi);

// A non-negative integer below 2^64, for seeds.
uint64_t unsigned_field(const nlohmann::json& value, const std::string& field);

// One of `choices`, as a JSON string.
std::string choice_field(const nlohmann::json& value, const std::string& field, const std::vector<std::string>& choices);

// An array of exactly `count` numbers, each finite as a float and on [lo, hi].
std::vector<float> numbers_field(const nlohmann::json& value, const std::string& field, size_t count,
                                 double lo = -std::numeric_limits<double>::max(),
                                 double hi = std::numeric_limits<double>::max());

}  // namespace vae
