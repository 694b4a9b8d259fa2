// YAML text → the config loader (gateway/config.*: load_config_from_string,
// the same path load_config takes after reading the file). ConfigError is
// the documented way to refuse a config; any other exception, a crash or a
// sanitizer report is a bug.
//
// The loader expands ${VAR}: the fuzzer sees a few variables set below.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <string>

#include "gateway/config.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("ARBITER_FUZZ_KEY", "ak-from-env", 1);
  setenv("ARBITER_FUZZ_EMPTY", "", 1);
  setenv("ARBITER_FUZZ_PORT", "8080", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  try {
    auto config = arbiter::gateway::load_config_from_string(yaml, "fuzz.yaml");
    arbiter::fuzz::check(config != nullptr, "loader returned no config");
    arbiter::fuzz::check(!config->projects.empty() && !config->upstreams.empty(),
                         "accepted a config without projects or upstreams");
  } catch (const arbiter::gateway::ConfigError& e) {
    arbiter::fuzz::check(e.what()[0] != '\0', "ConfigError without a message");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception from the config loader: %s\n", e.what());
    std::abort();
  }
  return 0;
}
