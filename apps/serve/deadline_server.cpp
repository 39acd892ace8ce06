#include "serve/deadline_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

namespace groupvit_cli {
namespace {

using Clock = std::chrono::steady_clock;

// Waits until the socket is readable (POLLIN) or writable (POLLOUT), at most `ms`.
bool wait_for(socket_t sock, short events, int ms) {
  pollfd p{sock, events, 0};
  int n;
  do {
    n = ::poll(&p, 1, std::max(ms, 0));
  } while (n < 0 && errno == EINTR);
  return n > 0;
}

void address_of(const sockaddr_storage& addr, std::string& ip, int& port) {
  char text[INET6_ADDRSTRLEN] = {0};
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
    port = ntohs(a->sin6_port);
  }
  ip = text;
}

// A connection's stream, buffered as httplib's own (its line reader asks for one byte at a time).
// Reads end at the deadline: the first read past it answers 408 itself and closes the sending
// side; what httplib then writes (its 400 for the cut request) is dropped, since the client has
// its answer.
class DeadlineStream final : public httplib::Stream {
 public:
  DeadlineStream(socket_t sock, Clock::time_point deadline, std::chrono::seconds limit, int read_ms, int write_ms)
      : sock_(sock), deadline_(deadline), limit_(limit), read_ms_(read_ms), write_ms_(write_ms) {}

  bool is_readable() const override { return begin_ < end_ || wait_for(sock_, POLLIN, read_wait_ms()); }
  bool is_writable() const override { return answered_ || wait_for(sock_, POLLOUT, write_ms_); }

  ssize_t read(char* ptr, size_t size) override {
    if (begin_ == end_) {
      if (answered_) return -1;
      // A wait that times out is the deadline (or the silence within it, which is never longer):
      // either way the request did not arrive in time.
      const int wait = read_wait_ms();
      if (wait <= 0 || !wait_for(sock_, POLLIN, wait)) {
        answer_late();
        return -1;
      }
      ssize_t n;
      do {
        n = ::recv(sock_, buffer_, sizeof buffer_, 0);
      } while (n < 0 && errno == EINTR);
      if (n <= 0) return n;
      begin_ = 0;
      end_ = static_cast<size_t>(n);
    }
    const size_t k = std::min(size, end_ - begin_);
    std::memcpy(ptr, buffer_ + begin_, k);
    begin_ += k;
    return static_cast<ssize_t>(k);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (answered_) return static_cast<ssize_t>(size);
    if (!wait_for(sock_, POLLOUT, write_ms_)) return -1;
    ssize_t n;
    do {
      n = ::send(sock_, ptr, size, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getpeername(sock_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) address_of(addr, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(sock_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) address_of(addr, ip, port);
  }
  socket_t socket() const override { return sock_; }

 private:
  // The silence allowed for this read: httplib's read timeout, cut to what is left of the deadline.
  int read_wait_ms() const {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
    return static_cast<int>(std::min<long long>(read_ms_, left));
  }

  void answer_late() {
    const std::string body = "{\"error\":\"the request did not arrive within " + std::to_string(limit_.count()) +
                             " s (--request-timeout)\"}";
    const std::string head =
        "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
        "Content-Length: " +
        std::to_string(body.size()) + "\r\n\r\n";
    write(head.data(), head.size());
    write(body.data(), body.size());
    ::shutdown(sock_, SHUT_WR);
    answered_ = true;
  }

  socket_t sock_;
  Clock::time_point deadline_;
  std::chrono::seconds limit_;
  int read_ms_, write_ms_;
  char buffer_[4096];
  size_t begin_ = 0, end_ = 0;
  bool answered_ = false;
};

}  // namespace

bool DeadlineServer::bind_and_listen(const std::string& host, int port) {
  // listen() on a listening socket only changes its backlog (Linux, POSIX alike).
  return bind_to_port(host, port) && ::listen(svr_sock_, SOMAXCONN) == 0;
}

bool DeadlineServer::process_and_close_socket(socket_t sock) {
  bool ret = false;
  // As httplib does before each request: an idle connection waits at most the keep-alive timeout
  // for its first byte; the deadline runs from there.
  if (wait_for(sock, POLLIN, static_cast<int>(keep_alive_timeout_sec_ * 1000)) && svr_sock_ != INVALID_SOCKET) {
    DeadlineStream stream(sock, Clock::now() + request_deadline_, request_deadline_,
                          static_cast<int>(read_timeout_sec_ * 1000 + read_timeout_usec_ / 1000),
                          static_cast<int>(write_timeout_sec_ * 1000 + write_timeout_usec_ / 1000));
    bool connection_closed = false;
    ret = process_request(stream, /*close_connection=*/true, connection_closed, nullptr);
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ret;
}

}  // namespace groupvit_cli
