#pragma once

// Self-signed certificates for TLS tests, made at run time so that no key material is checked in
// and nothing expires in the repository.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace arbiter::testing {

struct TestCert {
  std::string cert_pem{}, key_pem{};
};

// An EC P-256 key and a self-signed X.509v3 certificate for it: subjectAltName with the given
// DNS names and IP addresses, basicConstraints CA:TRUE so that a client can load the same PEM as
// its CA file, valid from one hour ago for one day. Throws std::runtime_error on failure.
// Thread-safe.
TestCert make_self_signed_cert(const std::vector<std::string>& dns_names = {"localhost"},
                               const std::vector<std::string>& ip_sans = {"127.0.0.1"});

// Writes (truncating) data to path; throws std::runtime_error on failure.
void write_file(const std::filesystem::path& path, std::string_view data);

}  // namespace arbiter::testing
