// The safetensors header held to the format's own rules. nlohmann::json alone is more lenient than
// the format: it keeps the last of two equal keys, takes tabs and newlines after the value, and
// stops at a NUL byte as if the input ended there. Each of those would let two readers see two
// different files, so each is refused here with a message that says which rule is broken.
#include "safetensors_header.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <set>

#include "vae/error.hpp"

namespace vae {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A header past this is not a checkpoint of ours (ours are a few kB), whatever the file says.
constexpr uint64_t kMaxHeaderBytes = uint64_t{1} << 24;

// Follows the parser through the objects it opens and remembers the first key an object repeats,
// with the keys that lead to that object, so the message can say where.
class RepeatedKeyFinder {
 public:
  bool on_event(json::parse_event_t event, const json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:  // its name: the parent's last key
        open_.push_back({open_.empty() ? std::string() : open_.back().last_key, {}, {}});
        break;
      case json::parse_event_t::key: {
        Object& object = open_.back();
        object.last_key = parsed.get<std::string>();
        if (!object.keys.insert(object.last_key).second && !found_) found_ = describe(object.last_key);
        break;
      }
      case json::parse_event_t::object_end:
        open_.pop_back();
        break;
      default:
        break;
    }
    return true;  // keep every value: the repeat is reported once the parse is done
  }
  const std::optional<std::string>& found() const { return found_; }

 private:
  struct Object {
    std::string name;
    std::set<std::string> keys;
    std::string last_key;
  };
  std::string describe(const std::string& key) const {
    std::string where;
    for (size_t i = 1; i < open_.size(); ++i) where += (i == 1 ? " in " : " > ") + plain_for_message(open_[i].name);
    return fmt::format("header repeats the key {}{}: safetensors forbids duplicate keys", plain_for_message(key),
                       where);
  }

  std::vector<Object> open_;  // the objects being parsed, outermost first
  std::optional<std::string> found_;
};

}  // namespace

std::string quoted_for_message(const std::string& text) {
  constexpr size_t kShown = 80;
  // ensure_ascii escapes every non-ASCII character, so the cut below never splits one in two.
  std::string shown = json(text).dump(-1, ' ', true, json::error_handler_t::replace);
  if (shown.size() > kShown) shown = shown.substr(0, kShown) + "...\"";
  return shown;
}

std::string plain_for_message(const std::string& text) {
  const bool plain = !text.empty() && text.size() <= 80 &&
                     std::all_of(text.begin(), text.end(), [](char ch) { return ch > ' ' && ch < 0x7f && ch != '"'; });
  return plain ? text : quoted_for_message(text);
}

SafetensorsFile split_safetensors(const std::vector<char>& bytes, const fs::path& file) {
  auto fail = [&](const std::string& what) { return Error(file.string() + ": " + what); };
  if (bytes.size() < 8) throw fail(fmt::format("{} bytes: too short for a safetensors header", bytes.size()));
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = (length << 8) | static_cast<uint8_t>(bytes[i]);
  if (length == 0 || length > kMaxHeaderBytes || length > bytes.size() - 8)
    throw fail(fmt::format("header length {} is impossible for a file of {} bytes", length, bytes.size()));

  const char* text = bytes.data() + 8;
  if (text[0] != '{') throw fail("header is not a JSON object (a safetensors header starts with '{')");
  // JSON text never holds a NUL, and nlohmann::json would take one for the end of its input.
  if (const void* nul = std::memchr(text, '\0', length))
    throw fail(fmt::format("header byte {} is NUL: a safetensors header is JSON text padded with spaces",
                           static_cast<const char*>(nul) - text));
  uint64_t end = length;
  while (text[end - 1] == ' ') --end;  // the format's padding; text[0] is '{', so this stops

  RepeatedKeyFinder repeats;
  json header;
  try {
    header = json::parse(text, text + end,
                         [&](int, json::parse_event_t event, json& parsed) { return repeats.on_event(event, parsed); });
  } catch (const json::parse_error& e) {
    // nlohmann's own words for a complete value followed by more text.
    if (std::strstr(e.what(), "expected end of input"))
      throw fail(fmt::format("header has more after its JSON object (at header byte {}); only spaces may follow it",
                             e.byte == 0 ? 0 : e.byte - 1));
    throw fail(std::string("header is not valid JSON: ") + e.what());
  } catch (const json::exception& e) {
    throw fail(std::string("header is not valid JSON: ") + e.what());
  }
  // The parser also skips tabs, newlines and carriage returns after the object; the format does not.
  uint64_t odd = std::string_view(text, end).rfind('}') + 1;
  if (odd != end) {
    while (text[odd] == ' ') ++odd;  // stops before `end`: text[end - 1] is not a space
    throw fail(fmt::format("header byte {} after its JSON object is 0x{:02x}; only spaces (0x20) may pad the header",
                           odd, static_cast<uint8_t>(text[odd])));
  }
  if (!header.is_object()) throw fail("header is not a JSON object");
  if (repeats.found()) throw fail(*repeats.found());

  const auto metadata = header.find("__metadata__");
  if (metadata != header.end()) {
    if (!metadata->is_object()) throw fail("header's __metadata__ is not a JSON object");
    for (const auto& [key, value] : metadata->items())
      if (!value.is_string()) throw fail(fmt::format("__metadata__ {} is not a string", quoted_for_message(key)));
  }
  return {std::move(header), text + length, bytes.size() - 8 - length};
}

}  // namespace vae
