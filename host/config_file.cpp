// The strict --config reader: toml11 parses, then each top-level key is matched to the app's option
// of that long name and its value turned into the text the command line would have carried.
// Keys are taken in file order (by line), so the first mistake in the file is the one reported.
#include "config_file.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <regex>
#include <sstream>
#include <toml.hpp>

#include "vae/error.hpp"

namespace vae {
namespace {

using Value = toml::basic_value<toml::discard_comments, std::map, std::vector>;

// toml11's messages span several lines: "[error] toml::parse_x: what", source lines " 3 | text" and
// markers "   | ^--- hint", then "Hint:" paragraphs. One line keeps the first sentence, the last
// marker's hint and the first source line quoted (which shows the key).
std::string one_line(const std::string& message) {
  std::istringstream lines(message);
  std::string line, what, hint, source;
  static const std::regex kSource(R"(^\s*\d+ \| (.*)$)"), kMarker(R"(^\s*\| *[\^~]+-* *(.*)$)");
  std::smatch m;
  while (std::getline(lines, line)) {
    if (what.empty()) {
      what = std::regex_replace(line, std::regex(R"(^\[error\] (toml::\w+: )?)"), "");
    } else if (source.empty() && std::regex_match(line, m, kSource)) {
      source = m[1];
    } else if (std::regex_match(line, m, kMarker) && m[1].length() > 0) {
      hint = m[1];
    }
  }
  std::string out = what;
  while (!out.empty() && (out.back() == '.' || out.back() == ' ')) out.pop_back();
  if (!hint.empty()) out += fmt::format(" ({})", hint);
  while (!source.empty() && (source.back() == ' ' || source.back() == '\r')) source.pop_back();
  if (!source.empty()) out += fmt::format(" at '{}'", source);
  return out;
}

// The literal as written in the file (one line for numbers), without '_' and a leading '+'.
std::string number_text(const Value& v) {
  const toml::source_location loc = v.location();
  std::string text = loc.line_str().substr(loc.column() - 1, loc.region());
  text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
  if (!text.empty() && text.front() == '+') text.erase(0, 1);
  return text;
}

const char* type_words(const Value& v) {
  switch (v.type()) {
    case toml::value_t::boolean: return "true/false";
    case toml::value_t::integer: return "an integer";
    case toml::value_t::floating: return "a float";
    case toml::value_t::string: return "a string";
    case toml::value_t::array: return "an array";
    case toml::value_t::table: return "a table";
    default: return "a date/time";
  }
}

}  // namespace

std::vector<CLI::ConfigItem> ConfigFile::from_config(std::istream& input) const {
  const CLI::Option* config = app_.get_config_ptr();
  if (config->results().size() != 1) throw UsageError("--config: give one file");
  file_ = config->results().front();
  lines_.clear();
  const std::string where = "--config " + file_;

  Value root;
  try {
    root = toml::parse<toml::discard_comments, std::map, std::vector>(input, file_);
  } catch (const toml::syntax_error& e) {
    throw UsageError(fmt::format("{} line {}: {}", where, e.location().line(), one_line(e.what())));
  } catch (const std::exception& e) {  // toml11 reports some problems (a bad UTF-8 byte) as others
    throw UsageError(fmt::format("{}: {}", where, one_line(e.what())));
  }

  std::vector<std::pair<std::string, const Value*>> keys;
  for (const auto& [key, value] : root.as_table()) keys.emplace_back(key, &value);
  std::stable_sort(keys.begin(), keys.end(),
                   [](const auto& a, const auto& b) { return a.second->location().line() < b.second->location().line(); });

  std::vector<CLI::ConfigItem> items;
  for (const auto& [key, value] : keys) {
    const int line = static_cast<int>(value->location().line());
    auto fail = [&](const std::string& what) {
      throw UsageError(fmt::format("{} line {}: {}: {}", where, line, key, what));
    };
    if (value->is_table())
      fail("tables, [sections] and dotted keys are not allowed; write every setting at the top level");
    const CLI::Option* option = app_.get_option_no_throw("--" + key);
    if (option == nullptr)
      fail("not a setting (keys are long flag names without the dashes, as in epochs = 10)");
    if (!option->get_configurable())
      fail(fmt::format("--{} is not a setting: it goes on the command line, not in the file", key));

    CLI::ConfigItem item;
    item.name = key;
    const bool is_flag = option->get_expected_min() == 0;  // CLI11's own test for a flag in a config
    const bool is_list = option->get_type_name().find(",...") != std::string::npos;
    if (is_flag) {
      if (!value->is_boolean()) fail(fmt::format("a flag takes true or false, not {}", type_words(*value)));
      item.inputs = {value->as_boolean() ? "true" : "false"};
    } else if (value->is_string()) {
      item.inputs = {value->as_string().str};
    } else if (value->is_integer() || value->is_floating()) {
      item.inputs = {number_text(*value)};
    } else if (value->is_array() && is_list) {
      std::string joined;
      for (const Value& element : value->as_array()) {
        if (!element.is_integer() && !element.is_floating())
          fail(fmt::format("the array holds {}; it takes numbers", type_words(element)));
        joined += (joined.empty() ? "" : ",") + number_text(element);
      }
      item.inputs = {joined};
    } else {
      fail(fmt::format("takes {}, not {}", is_list ? "an array of numbers or a string" : "a number or a string",
                       type_words(*value)));
    }
    if (option->empty()) lines_["--" + key] = line;  // else the command line gave it and wins
    items.push_back(std::move(item));
  }
  return items;
}

std::optional<std::string> ConfigFile::origin(const std::string& flag) const {
  const auto it = lines_.find(flag);
  if (it == lines_.end()) return std::nullopt;
  return fmt::format("{} line {}", file_, it->second);
}

std::shared_ptr<ConfigFile> add_config_option(CLI::App& app) {
  app.set_config("--config", "", "Settings from a TOML file: long flag names as keys (epochs = 30); flags given here win")
      ->option_text("FILE");
  auto formatter = std::make_shared<ConfigFile>(app);
  app.config_formatter(formatter);
  return formatter;
}

}  // namespace vae
