// The TLS listeners: TLS 1.2+ only, forward-secret AEAD suites for 1.2, no
// compression, no renegotiation; and certificate/key reload on SIGHUP — new
// connections get the new certificate, connections already open keep working,
// a bad new certificate keeps the old one and logs an error, no restart.
// Handshakes are made with OpenSSL directly (the client allows everything, at
// security level 0, so a refusal is the server's).

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "tests/integration/security_support.hpp"
#include "tests/support/test_cert.hpp"

namespace arbiter::testing {
namespace {

using namespace std::chrono_literals;
using namespace security;
using nlohmann::json;

struct Handshake {
  bool ok = false;
  std::string version, cipher, cert_pem;
  bool compressed = false;
  bool renegotiated = false;  // only when asked to try
};

// One TLS handshake to 127.0.0.1:port with the given protocol range and (for
// TLS <= 1.2) cipher list; optionally tries a renegotiation afterwards.
Handshake handshake(std::uint16_t port, int min_version, int max_version, const std::string& ciphers = "",
                    bool try_renegotiation = false) {
  Handshake out;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return out;
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_security_level(ctx, 0);
  SSL_CTX_set_min_proto_version(ctx, min_version);
  SSL_CTX_set_max_proto_version(ctx, max_version);
  SSL_CTX_set_cipher_list(ctx, ciphers.empty() ? "ALL:@SECLEVEL=0" : (ciphers + ":@SECLEVEL=0").c_str());
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, "localhost");
  if (SSL_connect(ssl) == 1) {
    out.ok = true;
    out.version = SSL_get_version(ssl);
    out.cipher = SSL_get_cipher_name(ssl);
    out.compressed = SSL_get_current_compression(ssl) != nullptr;
    if (X509* cert = SSL_get1_peer_certificate(ssl)) {
      BIO* bio = BIO_new(BIO_s_mem());
      PEM_write_bio_X509(bio, cert);
      char* data = nullptr;
      const long n = BIO_get_mem_data(bio, &data);
      out.cert_pem.assign(data, static_cast<std::size_t>(n));
      BIO_free(bio);
      X509_free(cert);
    }
    if (try_renegotiation) {
      out.renegotiated = SSL_renegotiate(ssl) == 1 && SSL_do_handshake(ssl) == 1;
      if (out.renegotiated) {
        // The request may only be sent; the server's refusal arrives with the next read.
        const std::string req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        char buf[512];
        out.renegotiated = SSL_write(ssl, req.data(), static_cast<int>(req.size())) > 0 &&
                           SSL_read(ssl, buf, sizeof buf) > 0 && SSL_renegotiate_pending(ssl) == 0;
      }
    }
    SSL_shutdown(ssl);
  }
  ERR_clear_error();
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ::close(fd);
  return out;
}

class TlsListener : public ::testing::Test {
 protected:
  void start() {
    dir_ = std::make_unique<TempDir>();
    write_file(cert_path(), first_.cert_pem);
    write_file(key_path(), first_.key_pem);
    const std::string tls = "{ cert_file: " + cert_path().string() + ", key_file: " + key_path().string() + " }";
    h_ = std::make_unique<GatewayHarness>(GatewayOptions{.server_extra = "  tls: " + tls + "\n"});
  }
  std::filesystem::path cert_path() const { return dir_->path() / "cert.pem"; }
  std::filesystem::path key_path() const { return dir_->path() / "key.pem"; }

  // SIGHUP, then wait for the reload's log line (the n-th of its kind).
  void reload_and_wait(const std::string& line, std::size_t nth) {
    h_->process().signal(SIGHUP);
    ASSERT_TRUE(wait_until(
        [&] {
          const std::string log = h_->stderr_text();
          std::size_t count = 0;
          for (auto pos = log.find(line); pos != std::string::npos; pos = log.find(line, pos + 1)) ++count;
          return count >= nth;
        },
        10s))
        << h_->stderr_text();
  }

  TestCert first_ = make_self_signed_cert();
  TestCert second_ = make_self_signed_cert();
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<GatewayHarness> h_;
};

TEST_F(TlsListener, OnlyTls12AndLaterWithForwardSecretAeadSuites) {
  start();
  for (const std::uint16_t port : {h_->proxy_port(), h_->api_port()}) {
    SCOPED_TRACE(port);
    // Refused: everything below TLS 1.2.
    EXPECT_FALSE(handshake(port, TLS1_VERSION, TLS1_VERSION).ok);
    EXPECT_FALSE(handshake(port, TLS1_1_VERSION, TLS1_1_VERSION).ok);
    // TLS 1.3 and 1.2 work; the default is 1.3.
    const auto best = handshake(port, TLS1_VERSION, TLS1_3_VERSION);
    ASSERT_TRUE(best.ok);
    EXPECT_EQ(best.version, "TLSv1.3");
    EXPECT_FALSE(best.compressed);
    for (const char* good : {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                             "ECDHE-ECDSA-CHACHA20-POLY1305"}) {
      const auto h = handshake(port, TLS1_2_VERSION, TLS1_2_VERSION, good);
      EXPECT_TRUE(h.ok) << good;
      EXPECT_EQ(h.cipher, good);
      EXPECT_FALSE(h.compressed);
    }
    // Refused for 1.2: CBC, SHA-1 MACs, no forward secrecy, RC4/3DES/NULL/anon/export.
    for (const char* bad : {"ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA",
                            "AES128-GCM-SHA256", "AES256-SHA", "DES-CBC3-SHA", "RC4-SHA", "NULL-SHA",
                            "aNULL", "eNULL", "EXPORT", "DHE-RSA-AES128-GCM-SHA256"}) {
      EXPECT_FALSE(handshake(port, TLS1_2_VERSION, TLS1_2_VERSION, bad).ok) << bad;
    }
    // Renegotiation is refused.
    const auto reneg = handshake(port, TLS1_2_VERSION, TLS1_2_VERSION, "", true);
    ASSERT_TRUE(reneg.ok);
    EXPECT_FALSE(reneg.renegotiated);
  }
  // Plain HTTP on the TLS port gets nowhere.
  const auto plain = raw_exchange("127.0.0.1", h_->api_port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 3s);
  EXPECT_EQ(plain.find("HTTP/1.1 200"), std::string::npos) << plain;
}

TEST_F(TlsListener, SighupReloadsTheCertificateWithoutDisturbingOpenConnections) {
  start();
  const auto pid = h_->process().pid();
  ASSERT_EQ(handshake(h_->proxy_port(), TLS1_2_VERSION, TLS1_3_VERSION).cert_pem, first_.cert_pem);

  // A kept-alive connection opened with the first certificate, and a call in
  // flight (the upstream delays it) across the reload.
  HttpClient kept("127.0.0.1", h_->proxy_port(), first_.cert_pem, "localhost");
  ASSERT_EQ(kept.request("GET", "/v1/models", GatewayHarness::auth()).status, 200);
  std::atomic<int> in_flight_status{0};
  const auto seen_before = h_->upstream().request_count();
  std::thread slow([&] {
    try {
      HttpClient c("127.0.0.1", h_->proxy_port(), first_.cert_pem, "localhost");
      in_flight_status = c.request("POST", "/v1/chat/completions",
                                   GatewayHarness::auth({{"Content-Type", "application/json"},
                                                         {"x-fake-delay-ms", "1500"}}),
                                   GatewayHarness::chat_body())
                             .status;
    } catch (const std::exception&) {
      in_flight_status = -1;
    }
  });
  // The upstream has the call (it records a request before delaying its answer).
  const bool arrived = wait_until([&] { return h_->upstream().request_count() > seen_before; }, 10s);
  if (!arrived) slow.join();
  ASSERT_TRUE(arrived);

  write_file(cert_path(), second_.cert_pem);
  write_file(key_path(), second_.key_pem);
  reload_and_wait("TLS certificates reloaded", 1);
  slow.join();
  EXPECT_EQ(in_flight_status.load(), 200) << "the call in flight across the reload failed";
  EXPECT_EQ(kept.request("GET", "/v1/models", GatewayHarness::auth()).status, 200)
      << "a connection opened before the reload stopped working";

  // New connections, on both listeners, get the new certificate.
  EXPECT_EQ(handshake(h_->proxy_port(), TLS1_2_VERSION, TLS1_3_VERSION).cert_pem, second_.cert_pem);
  EXPECT_EQ(handshake(h_->api_port(), TLS1_2_VERSION, TLS1_3_VERSION).cert_pem, second_.cert_pem);
  HttpClient fresh("127.0.0.1", h_->api_port(), second_.cert_pem, "localhost");
  EXPECT_EQ(fresh.request("GET", "/healthz").status, 200);

  // A broken certificate file, then a key that does not match the
  // certificate: each reload fails, is logged, and the second certificate stays.
  write_file(cert_path(), "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n");
  reload_and_wait("TLS reload failed", 2);  // one line per listener
  EXPECT_EQ(handshake(h_->proxy_port(), TLS1_2_VERSION, TLS1_3_VERSION).cert_pem, second_.cert_pem);
  const TestCert third = make_self_signed_cert();
  write_file(cert_path(), third.cert_pem);  // key.pem still holds the second key
  reload_and_wait("TLS reload failed", 4);
  EXPECT_EQ(handshake(h_->api_port(), TLS1_2_VERSION, TLS1_3_VERSION).cert_pem, second_.cert_pem);
  std::filesystem::remove(key_path());
  reload_and_wait("TLS reload failed", 6);
  EXPECT_EQ(handshake(h_->proxy_port(), TLS1_2_VERSION, TLS1_3_VERSION).cert_pem, second_.cert_pem);
  // The error names the listener and the file, never key material.
  const std::string log = h_->stderr_text();
  EXPECT_NE(log.find(key_path().string()), std::string::npos);
  EXPECT_EQ(log.find("PRIVATE KEY"), std::string::npos);

  // Fixed files load again. Same process all along.
  write_file(cert_path(), third.cert_pem);
  write_file(key_path(), third.key_pem);
  reload_and_wait("TLS certificates reloaded", 2);
  EXPECT_EQ(handshake(h_->proxy_port(), TLS1_2_VERSION, TLS1_3_VERSION).cert_pem, third.cert_pem);
  EXPECT_EQ(h_->process().pid(), pid);
  EXPECT_TRUE(h_->process().running());
  HttpClient last("127.0.0.1", h_->proxy_port(), third.cert_pem, "localhost");
  EXPECT_EQ(last.request("GET", "/v1/models", GatewayHarness::auth()).status, 200);
}

TEST(PlainListener, SighupWithoutTlsChangesNothing) {
  GatewayHarness h;
  h.process().signal(SIGHUP);
  ASSERT_TRUE(wait_until([&] { return h.stderr_text().find("SIGHUP") != std::string::npos; }, 10s))
      << h.stderr_text();
  EXPECT_TRUE(h.process().running());
  EXPECT_EQ(proxy_call(h).status, 200);
}

}  // namespace
}  // namespace arbiter::testing
