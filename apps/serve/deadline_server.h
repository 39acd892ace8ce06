// cpp-httplib's Server with one request per connection and a deadline on receiving it.
//
// httplib 0.11 bounds only the silence between reads, so a client sending a byte a second (its
// request line, headers or body) holds a connection slot for as long as it likes. This server
// reads each connection through a stream of its own whose reads end at a deadline: the whole
// request, from its first byte, must arrive within `request_deadline`; past it the client gets
// 408 and the connection is closed. It also serves one request per connection (why: README,
// Serving): httplib would take an unread body on a kept-alive connection for the next request.
#pragma once

#include <httplib.h>

#include <chrono>
#include <string>

namespace groupvit_cli {

class DeadlineServer : public httplib::Server {
 public:
  explicit DeadlineServer(std::chrono::seconds request_deadline) : request_deadline_(request_deadline) {}

  // bind_to_port, then a listen backlog of SOMAXCONN instead of the 5 Debian's libcpp-httplib was
  // compiled with: a burst of more connections than that overflowed the kernel's queues (SYN
  // cookies past the backlog), and some of those clients were reset instead of waiting their turn.
  bool bind_and_listen(const std::string& host, int port);

 private:
  // httplib's hook for each accepted connection (a private virtual: overriding it is allowed).
  bool process_and_close_socket(socket_t sock) override;

  std::chrono::seconds request_deadline_;
};

}  // namespace groupvit_cli
