// --config FILE: vae_cuda's settings from a TOML file, strictly. CLI11's own reader takes
// `epochs = [1, 2` as 1 and blames unknown keys on "INI"; this one parses with toml11 and refuses
// anything that is not one setting written once, with one line naming the file, the line and the key.
#pragma once

#include <CLI/CLI.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vae {

// A CLI11 config formatter over an App. The keys allowed are the long names (without "--") of the
// app's configurable options, so a new option needs nothing here; options that name the command
// (--train, --resume, ...) are marked configurable(false) where they are declared, and CLI11 already
// marks --help, --version and --config itself so. What each key takes:
//   flag (an option taking no value)             true or false
//   list option (type name containing ",...")    an array of numbers, joined with ',', or a string
//   any other option                             a string, an integer or a float
// Numbers become the text they were written as (underscores and a leading '+' dropped), so they meet
// the very checks of the command line: `epochs = 1.5` and `--epochs 1.5` give one error. A key also
// given on the command line keeps the command line's value (CLI11 fills only options still empty).
class ConfigFile : public CLI::Config {
 public:
  // app must outlive this formatter; its --config option holds the file's name.
  explicit ConfigFile(const CLI::App& app) : app_(app) {}

  // Throws vae::UsageError, one line starting "--config FILE", for: a TOML syntax error (toml11's
  // message cut to one line, with the source line), a duplicate key, a table or [section], an
  // unknown or command key, a value of the wrong type, and a second --config.
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override;

  // Writing a file is CLI11's TOML writer's job (not used by vae_cuda).
  std::string to_config(const CLI::App* app, bool default_also, bool write_description,
                        std::string prefix) const override {
    return CLI::ConfigTOML().to_config(app, default_also, write_description, std::move(prefix));
  }

  // "FILE line N" for a flag ("--epochs") whose value came from the file, for error messages about
  // that value; nullopt when the command line gave it or the file did not.
  std::optional<std::string> origin(const std::string& flag) const;

 private:
  const CLI::App& app_;
  mutable std::string file_;
  mutable std::map<std::string, int> lines_;  // "--flag" -> line, for values taken from the file
};

// Adds --config FILE to app with a ConfigFile as its formatter; returns the formatter.
std::shared_ptr<ConfigFile> add_config_option(CLI::App& app);

}  // namespace vae
