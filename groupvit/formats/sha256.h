// SHA-256 of a byte stream (OpenSSL's libcrypto underneath), for checksums.sha256.
#pragma once

#include <cstddef>
#include <string>

namespace groupvit {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&& other) noexcept;
  Sha256& operator=(Sha256&&) = delete;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, size_t size);
  std::string hex_digest();  // lower-case hex, as sha256sum prints it; ends the stream

 private:
  void* ctx_;  // EVP_MD_CTX, kept out of the header so that users need no OpenSSL headers
};

}  // namespace groupvit
