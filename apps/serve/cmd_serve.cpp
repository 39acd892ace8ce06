// groupvit serve: the demo page and the JSON API of docs/serve-api.md over HTTP (cpp-httplib, from
// Debian: a maintained single-header server with multipart parsing, body-size limits and
// timeouts, and nothing to configure beyond what this file sets). The model work is ModelService
// (service.h); this file turns requests into its parameters and its answers and errors into
// responses, and keeps the server safe by default: loopback unless told otherwise, a bearer token
// from --api-key-file (required off loopback unless --insecure), limits on bodies, pixels, labels,
// reads and queued work, no way to name a file on the server, and a clean stop on SIGTERM.
#include <httplib.h>
#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli_common.h"
#include "serve/deadline_server.h"
#include "serve/serve_assets.h"
#include "serve/service.h"

namespace groupvit_cli {

namespace {

using json = nlohmann::json;

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& what) {
  if (status == 503) res.set_header("Retry-After", "1");
  send_json(res, status, {{"error", what}});
}

std::string decode_base64(std::string text, const std::string& what) {
  if (text.rfind("data:", 0) == 0) {  // a data: URL, as a browser's FileReader gives it
    const auto comma = text.find(',');
    if (comma == std::string::npos) throw HttpError(400, what + ": a data: URL without ','");
    text = text.substr(comma + 1);
  }
  text.erase(std::remove_if(text.begin(), text.end(), [](char c) { return c == '\n' || c == '\r' || c == ' '; }),
             text.end());
  if (text.empty() || text.size() % 4 != 0) throw HttpError(400, what + ": not base64 (length not a multiple of 4)");
  std::string out(text.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) throw HttpError(400, what + ": not base64");
  size_t pad = 0;
  while (pad < 2 && text[text.size() - 1 - pad] == '=') ++pad;  // EVP_DecodeBlock counts padding as zero bytes
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

bool parse_bool(const std::string& v, const std::string& what) {
  if (v == "true" || v == "1" || v == "on") return true;
  if (v == "false" || v == "0" || v == "off" || v.empty()) return false;
  throw HttpError(400, what + ": '" + v + "' is neither true nor false");
}

double parse_number(const std::string& v, const std::string& what) {
  try {
    size_t used = 0;
    const double d = std::stod(v, &used);
    if (used != v.size()) throw std::invalid_argument(v);
    return d;
  } catch (const std::exception&) {
    throw HttpError(400, what + ": '" + v + "' is not a number");
  }
}

// The request's fields, from a multipart form or a JSON object: field(name) as text, files(name).
class Fields {
 public:
  explicit Fields(const httplib::Request& req) : req_(req) {
    const auto type = req.get_header_value("Content-Type");
    if (req.is_multipart_form_data()) {
      multipart_ = true;
    } else if (type.rfind("application/json", 0) == 0) {
      body_ = json::parse(req.body, nullptr, false);
      if (body_.is_discarded() || !body_.is_object()) throw HttpError(400, "the body is not a JSON object");
    } else {
      throw HttpError(415, "send multipart/form-data or application/json (got '" + type + "')");
    }
  }
  bool has(const std::string& name) const { return multipart_ ? req_.has_file(name) : body_.contains(name); }
  std::string text(const std::string& name, const std::string& fallback = "") const {
    if (!has(name)) return fallback;
    if (multipart_) return req_.get_file_value(name).content;
    const auto& v = body_[name];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
    if (v.is_number()) return v.dump();
    throw HttpError(400, name + ": expected a string, number or boolean");
  }
  // Several values: repeated multipart fields, or a JSON array (a JSON string counts as one).
  std::vector<std::string> texts(const std::string& name) const {
    std::vector<std::string> out;
    if (multipart_) {
      for (auto [it, end] = req_.files.equal_range(name); it != end; ++it) out.push_back(it->second.content);
      return out;
    }
    if (!body_.contains(name)) return out;
    const auto& v = body_[name];
    if (v.is_string()) return {v.get<std::string>()};
    if (!v.is_array()) throw HttpError(400, name + ": expected an array of strings");
    for (const auto& e : v) {
      if (!e.is_string()) throw HttpError(400, name + ": expected an array of strings");
      out.push_back(e.get<std::string>());
    }
    return out;
  }
  // Files: multipart file parts as sent; JSON: base64 strings.
  std::vector<std::string> files(const std::string& name) const {
    auto values = texts(name);
    if (!multipart_)
      for (size_t i = 0; i < values.size(); ++i)
        values[i] = decode_base64(values[i], name + " " + std::to_string(i + 1));
    return values;
  }
  bool is_multipart() const { return multipart_; }
  const json& body() const { return body_; }

 private:
  const httplib::Request& req_;
  bool multipart_ = false;
  json body_;
};

SegmentParams segment_params(const Fields& f) {
  SegmentParams p;
  const auto images = f.files("image");
  if (images.size() != 1) throw HttpError(400, "image: give exactly one image");
  p.image = images.front();
  if (!f.is_multipart() && f.body().contains("labels") && !f.body()["labels"].is_array() &&
      !f.body()["labels"].is_string())
    throw HttpError(400, "labels: expected a string (comma-separated) or an array of strings");
  if (!f.is_multipart() && f.body().contains("labels") && f.body()["labels"].is_array()) {
    p.labels = f.texts("labels");
    for (auto& l : p.labels) l = trim(l);
  } else {
    p.labels = split_labels(f.text("labels"));
  }
  p.mode = f.text("mode", p.mode);
  p.templates = f.text("templates", p.templates);
  if (f.has("bg_thresh")) p.bg_thresh = parse_number(f.text("bg_thresh"), "bg_thresh");
  p.masks = parse_bool(f.text("masks", "false"), "masks");
  p.groups = parse_bool(f.text("groups", "false"), "groups");
  p.overlay = parse_bool(f.text("overlay", "true"), "overlay");
  return p;
}

ImagesParams images_params(const Fields& f, bool with_normalize) {
  ImagesParams p;
  p.images = f.has("images") ? f.files("images") : f.files("image");
  p.texts = f.has("texts") ? f.texts("texts") : f.texts("text");
  if (with_normalize) p.normalize = parse_bool(f.text("normalize", "false"), "normalize");
  return p;
}

bool is_loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::string read_api_key(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError("--api-key-file " + path + ": cannot read it");
  std::string key;
  std::getline(in, key);
  key = trim(key);
  if (key.size() < 16) throw UsageError("--api-key-file " + path + ": the key must be at least 16 characters");
  return key;
}

// Constant-time comparison: the time taken must not tell how much of a guessed key was right.
bool same_key(const std::string& a, const std::string& b) {
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned>(a[i] ^ b[i % std::max<size_t>(1, b.size())]);
  return diff == 0;
}

// The method each endpoint takes; empty for an unknown path.
std::string allowed_method(const std::string& path) {
  if (path == "/" || path == "/openapi.json" || path == "/healthz" || path == "/v1/model") return "GET";
  if (path == "/v1/segment" || path == "/v1/similarity" || path == "/v1/embed") return "POST";
  return "";
}

// httplib's own refusals (413, 400 for a broken multipart, 404, 405...) get a JSON body too.
void set_error_answers(httplib::Server& server) {
  server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    // A body method on a known path of another method: httplib has read the body and found no
    // handler (404); the answer is 405 naming the method the path takes.
    const auto allowed = allowed_method(req.path);
    if (res.status == 404 && !allowed.empty()) {
      res.set_header("Allow", allowed);
      send_error(res, 405, "this endpoint takes " + allowed);
      return;
    }
    if (res.body.empty())
      send_error(res, res.status,
                 res.status == 413   ? std::string("the request body is over the server's limit (--max-body-mb)")
                 : res.status == 404 ? "no such endpoint (see /openapi.json)"
                 : res.status == 405 ? "method not allowed on this endpoint"
                 : res.status == 400 ? "the request could not be read (its request line, headers or body)"
                                     : "the request was refused (HTTP " + std::to_string(res.status) + ")");
  });
}

// What is decided from the request line and headers alone, before any body is read: a declared
// body over the limit, a known path asked with the wrong method, a stopping server, the API key.
void set_gatekeeper(httplib::Server& server, size_t max_body_bytes, const std::string& api_key,
                    const std::atomic<bool>& stopping) {
  server.set_pre_routing_handler(
      [max_body_bytes, &api_key, &stopping](const httplib::Request& req, httplib::Response& res) {
        // Before the body is read: a declared length over the limit is refused at once (httplib would
        // first wait for the body); the connection is closed after the answer, as every one is.
        if (req.has_header("Content-Length")) {
          const auto declared = req.get_header_value("Content-Length");
          if (declared.size() > 18 || std::stoull("0" + declared) > max_body_bytes) {
            send_error(res, 413,
                       "the declared request body of " + declared + " bytes is over the server's limit (" +
                           std::to_string(max_body_bytes) + ", --max-body-mb)");
            return httplib::Server::HandlerResponse::Handled;
          }
        }
        // A known path asked with another method whose body httplib never reads (GET, HEAD, OPTIONS,
        // DELETE...): 405 naming the one it takes (httplib alone says 404). POST, PUT and PATCH go on,
        // so that their body is read before the error handler's 405.
        const auto allowed = allowed_method(req.path);
        const bool body_read = req.method == "POST" || req.method == "PUT" || req.method == "PATCH";
        if (!allowed.empty() && req.method != allowed && !(allowed == "GET" && req.method == "HEAD") && !body_read) {
          res.set_header("Allow", allowed);
          send_error(res, 405, "this endpoint takes " + allowed);
          return httplib::Server::HandlerResponse::Handled;
        }
        if (req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
        if (stopping) {
          send_error(res, 503, "the server is stopping");
          return httplib::Server::HandlerResponse::Handled;
        }
        const auto auth = req.get_header_value("Authorization");
        if (!api_key.empty() && !(auth.rfind("Bearer ", 0) == 0 && same_key(auth.substr(7), api_key))) {
          res.set_header("WWW-Authenticate", "Bearer");
          send_error(res, 401, "missing or wrong API key (send 'Authorization: Bearer KEY')");
          return httplib::Server::HandlerResponse::Handled;
        }
        return httplib::Server::HandlerResponse::Unhandled;
      });
}

}  // namespace

void add_serve_options(CLI::App* cmd, ServeOptions& o) {
  cmd->add_option("--host", o.host, "address to listen on (a non-loopback one needs --api-key-file or --insecure)")
      ->capture_default_str();
  cmd->add_option("--port", o.port, "TCP port")->check(CLI::Range(1, 65535))->capture_default_str();
  cmd->add_option("--api-key-file", o.api_key_file,
                  "file whose first line is the key clients send as 'Authorization: Bearer KEY' (/v1/ endpoints)");
  cmd->add_flag("--insecure", o.insecure, "allow a non-loopback --host without --api-key-file");
  cmd->add_option("--max-body-mb", o.max_body_mb, "largest request body (MiB)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--max-pixels", o.max_pixels, "largest image (width x height), refused from its header")
      ->check(CLI::Range(int64_t{1}, int64_t{200000000}))
      ->capture_default_str();
  cmd->add_option("--max-labels", o.max_labels, "most labels per request")
      ->check(CLI::Range(1, 254))
      ->capture_default_str();
  cmd->add_option(
         "--request-timeout", o.request_timeout,
         "seconds a client may take to send a whole request (408 after), or stay silent while reading the answer")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  cmd->add_option("--max-connections", o.max_connections, "connections served at once (more wait)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--max-queue", o.max_queue, "requests waiting for the model; more get 503 with Retry-After")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--max-batch-size", o.max_batch_size, "requests gathered into one model call")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--max-wait-ms", o.max_wait_ms, "how long the first request of a batch waits for more")
      ->check(CLI::Range(0, 10000))
      ->capture_default_str();
}

int run_serve(const Common& c, const ServeOptions& o) {
  std::string api_key;
  if (!o.api_key_file.empty()) api_key = read_api_key(o.api_key_file);
  if (!is_loopback(o.host) && api_key.empty() && !o.insecure)
    throw UsageError("--host " + o.host +
                     " is reachable from other machines: give --api-key-file FILE (or --insecure to serve anyone)");
  ServeLimits limits;
  limits.max_body_bytes = static_cast<size_t>(o.max_body_mb) << 20;
  limits.max_pixels = o.max_pixels;
  limits.max_labels = static_cast<size_t>(o.max_labels);
  ModelService service(c, limits, static_cast<size_t>(o.max_batch_size), o.max_wait_ms,
                       static_cast<size_t>(o.max_queue));

  DeadlineServer server(std::chrono::seconds(o.request_timeout));  // one request per connection
  std::atomic<bool> stopping{false};
  server.new_task_queue = [&o] { return new httplib::ThreadPool(static_cast<size_t>(o.max_connections)); };
  server.set_payload_max_length(limits.max_body_bytes);
  server.set_read_timeout(o.request_timeout);
  server.set_write_timeout(o.request_timeout);
  server.set_keep_alive_timeout(2);  // how long a new connection may stay silent before its first byte
  set_error_answers(server);
  set_gatekeeper(server, limits.max_body_bytes, api_key, stopping);
  auto api = [&](const std::function<json(const Fields&)>& work) {
    return [&, work](const httplib::Request& req, httplib::Response& res) {
      try {
        send_json(res, 200, work(Fields(req)));
      } catch (const HttpError& e) {
        send_error(res, e.status, e.what());
      } catch (const Unavailable& e) {
        send_error(res, 503, e.what());
      } catch (const std::exception& e) {
        send_error(res, 500, e.what());
      }
    };
  };
  server.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kServePage, "text/html; charset=utf-8");
  });
  server.Get("/openapi.json", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kServeOpenApi, "application/json");
  });
  server.Get("/healthz", [&](const httplib::Request&, httplib::Response& res) {
    if (stopping)
      send_json(res, 503, {{"status", "stopping"}});
    else
      send_json(res, 200, {{"status", "ok"}});
  });
  server.Get("/v1/model",
             [&](const httplib::Request&, httplib::Response& res) { send_json(res, 200, service.model_info()); });
  server.Post("/v1/segment", api([&](const Fields& f) { return service.segment(segment_params(f)); }));
  server.Post("/v1/similarity", api([&](const Fields& f) { return service.similarity(images_params(f, false)); }));
  server.Post("/v1/embed", api([&](const Fields& f) { return service.embed(images_params(f, true)); }));

  if (!server.bind_and_listen(o.host, o.port))
    throw UsageError("cannot listen on " + o.host + ":" + std::to_string(o.port) + " (in use, or not an address here)");
  install_stop_handlers();
  std::atomic<bool> listening_ended{false};
  std::thread watcher([&] {
    while (!stop_signal() && !listening_ended) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    stopping = true;
    server.stop();  // stops accepting; listen_after_bind returns once the requests in flight are answered
  });
  std::cerr << "groupvit: serving http://" << (o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host)
            << ":" << o.port << "/ (model " << c.model_dir << "; stop with Ctrl-C or SIGTERM)" << std::endl;
  server.listen_after_bind();
  listening_ended = true;
  watcher.join();
  service.stop();
  std::cerr << "groupvit: stopped\n";
  return kExitOk;
}

}  // namespace groupvit_cli
