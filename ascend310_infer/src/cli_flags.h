// A tiny --name=value / --name value parser shared by the two executables, so neither needs
// gflags. Header-only on purpose: each executable compiles it with its own string ABI.
#ifndef RL310_CLI_FLAGS_H_
#define RL310_CLI_FLAGS_H_

#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>

namespace rl310 {

class CliFlags {
 public:
  // defaults: every accepted flag name (without "--") and its default value ("" = required).
  CliFlags(int argc, char** argv, std::map<std::string, std::string> defaults)
      : values_(std::move(defaults)) {
    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg == "-h" || arg == "--help") {
        help_ = true;
        continue;
      }
      if (arg.rfind("--", 0) != 0) {
        throw std::invalid_argument("unexpected argument '" + arg + "' (flags look like --name=value)");
      }
      std::string name = arg.substr(2);
      std::string value;
      const auto eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        throw std::invalid_argument("flag --" + name + " needs a value");
      }
      if (values_.count(name) == 0) {
        throw std::invalid_argument("unknown flag --" + name);
      }
      values_[name] = value;
    }
  }

  bool help() const { return help_; }

  const std::string& Get(const std::string& name) const {
    const std::string& value = values_.at(name);
    if (value.empty()) {
      throw std::invalid_argument("flag --" + name + " is required");
    }
    return value;
  }

  // An integer in [min_value, max_value]; the message names the flag and the allowed range.
  int GetInt(const std::string& name, int min_value, int max_value) const {
    const std::string& text = Get(name);
    char* end = nullptr;
    const long value = std::strtol(text.c_str(), &end, 10);
    if (end == text.c_str() || *end != '\0' || value < min_value || value > max_value) {
      throw std::invalid_argument("--" + name + "=" + text + " is not an integer in [" +
                                  std::to_string(min_value) + ", " + std::to_string(max_value) +
                                  "]");
    }
    return static_cast<int>(value);
  }

 private:
  std::map<std::string, std::string> values_;
  bool help_ = false;
};

}  // namespace rl310

#endif  // RL310_CLI_FLAGS_H_
