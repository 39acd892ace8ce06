#include "batch/webdataset.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace groupvit_cli {

namespace {

constexpr size_t kMaxExpansions = 1000000;
// Ranges are parsed into uint64_t; 18 digits can neither overflow it nor be wanted in a shard name.
constexpr size_t kMaxRangeDigits = 18;
// libarchive reads the file in blocks of this size (archive_read_open_filename's block_size).
constexpr size_t kBlockSize = size_t(64) << 10;
// ARCHIVE_RETRY asks the caller to try again; a reader that keeps asking is treated as a corrupt archive
// rather than looped on forever.
constexpr int kMaxRetries = 16;

[[noreturn]] void malformed(const std::string& pattern, const std::string& why) {
  throw std::invalid_argument("bad brace pattern '" + pattern + "': " + why);
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The alternatives of one group's body (the text between '{' and '}').
std::vector<std::string> group_items(const std::string& pattern, const std::string& body) {
  std::vector<std::string> items;
  if (body.find(',') != std::string::npos) {
    size_t start = 0;
    for (;;) {
      const size_t comma = body.find(',', start);
      items.push_back(body.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) return items;
      start = comma + 1;
    }
  }
  const size_t dots = body.find("..");
  if (dots == std::string::npos) malformed(pattern, "group '{" + body + "}' is neither a list nor a range");
  const std::string lo_text = body.substr(0, dots), hi_text = body.substr(dots + 2);
  if (!all_digits(lo_text) || !all_digits(hi_text)) {
    malformed(pattern, "range '{" + body + "}' needs two decimal numbers");
  }
  if (lo_text.size() > kMaxRangeDigits || hi_text.size() > kMaxRangeDigits) {
    malformed(pattern, "range '{" + body + "}' has bounds that are too long");
  }
  const uint64_t lo = std::stoull(lo_text), hi = std::stoull(hi_text);
  if (lo > hi) malformed(pattern, "range '{" + body + "}' is descending");
  if (hi - lo >= kMaxExpansions) malformed(pattern, "more than 1000000 names");
  // braceexpand pads to the wider bound only when a bound is written with a leading zero.
  const bool padded = (lo_text.size() > 1 && lo_text[0] == '0') || (hi_text.size() > 1 && hi_text[0] == '0');
  const size_t width = padded ? std::max(lo_text.size(), hi_text.size()) : 0;
  for (uint64_t v = lo;; ++v) {
    std::string s = std::to_string(v);
    if (s.size() < width) s.insert(0, width - s.size(), '0');
    items.push_back(std::move(s));
    if (v == hi) break;
  }
  return items;
}

struct Piece {
  std::string literal;             // text before the group (or the tail, for the last piece)
  std::vector<std::string> items;  // the group's alternatives; empty for the tail
};

bool ends_with_ci(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  if (s.size() < n) return false;
  for (size_t i = 0; i < n; ++i) {
    char c = s[s.size() - n + i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != suffix[i]) return false;
  }
  return true;
}

std::string lower_ascii(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

// Frees the libarchive reader (closing the file) on every path out of for_each_sample.
struct ArchiveFree {
  void operator()(archive* a) const noexcept { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveFree>;

std::string archive_message(archive* a) {
  const char* s = archive_error_string(a);
  return s != nullptr && *s != '\0' ? s : "unknown libarchive error";
}

using ErrorFn = std::function<void(const std::string&, const std::string&)>;

// One pass over an opened shard: grouping members into samples and the error policy of for_each_sample.
class ShardReader {
 public:
  ShardReader(archive* a, bool headers_only, const std::function<bool(WebDatasetSample&)>& visit,
              const ErrorFn& on_error, size_t max_member_bytes)
      : a_(a), headers_only_(headers_only), visit_(visit), on_error_(on_error), max_bytes_(max_member_bytes) {}

  // False when visit asked to stop.
  bool run() {
    int retries = 0;
    for (;;) {
      archive_entry* entry = nullptr;
      const int r = archive_read_next_header(a_, &entry);
      if (r == ARCHIVE_EOF) break;
      if (r == ARCHIVE_RETRY && ++retries <= kMaxRetries) continue;
      retries = 0;
      if (r == ARCHIVE_FAILED) {
        // This entry's header is unusable but the archive goes on: the next call steps over it.
        on_error_(entry != nullptr ? entry_path(entry) : "", archive_message(a_) + "; member skipped");
        continue;
      }
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
        // ARCHIVE_FATAL (or RETRY too often): a cut-off or damaged archive; the reader cannot go on. The
        // sample in progress may have lost members to the damage, so it is dropped.
        on_error_("", "truncated or corrupt archive: " + archive_message(a_));
        return true;
      }
      // ARCHIVE_WARN: the header was read (libarchive warns e.g. of an ignored pax attribute).
      const Step step = member(entry);
      if (step == Step::kStop) return false;
      if (step == Step::kFatal) return true;
    }
    return flush();
  }

 private:
  enum class Step { kNext, kStop, kFatal };

  static std::string entry_path(archive_entry* entry) {
    // The locale's spelling first; a name that does not convert to it still has a UTF-8 one (pax).
    const char* p = archive_entry_pathname(entry);
    if (p == nullptr) p = archive_entry_pathname_utf8(entry);
    return p != nullptr ? p : "";
  }

  // Hands the finished sample to visit (if it has members). False when visit says stop.
  bool flush() {
    if (!have_sample_) return true;
    have_sample_ = false;
    if (sample_.members.empty()) return true;  // every member was skipped: WebDataset drops it too
    return visit_(sample_);
  }

  Step member(archive_entry* entry) {
    // WebDataset takes regular files only (tarfile's isreg()): a hard link is a regular type with a
    // link target and no data of its own.
    if (archive_entry_filetype(entry) != AE_IFREG || archive_entry_hardlink(entry) != nullptr) {
      return Step::kNext;
    }
    const std::string path = entry_path(entry);
    std::string key, ext;
    if (!split_webdataset_name(path, key, ext)) return Step::kNext;
    if (!have_sample_ || key != sample_.key) {
      // A member of another key ends the current sample (keys are grouped only when consecutive).
      if (!flush()) return Step::kStop;
      sample_.key = key;
      sample_.members.clear();
      have_sample_ = true;
    }
    if (sample_.members.count(ext) != 0) {
      on_error_(path, "duplicate extension '" + ext + "' in sample '" + key + "'; member skipped");
      return skip(path);
    }
    if (archive_entry_size_is_set(entry) && archive_entry_size(entry) >= 0 &&
        static_cast<uint64_t>(archive_entry_size(entry)) > max_bytes_) {
      on_error_(path, "member of " + std::to_string(archive_entry_size(entry)) + " bytes is over the limit of " +
                          std::to_string(max_bytes_) + " bytes; member skipped");
      return skip(path);
    }
    if (headers_only_) {
      const Step step = skip(path);
      if (step == Step::kNext) sample_.members[ext];
      return step;
    }
    const int64_t size = archive_entry_size_is_set(entry) ? archive_entry_size(entry) : -1;
    return read(path, ext, size);
  }

  // Steps over the member's bytes: a seek in a plain tar, decompression in a gzipped one.
  Step skip(const std::string& path) {
    const int r = archive_read_data_skip(a_);
    if (r == ARCHIVE_OK || r == ARCHIVE_WARN) return Step::kNext;
    return fail(path, r);
  }

  // A failed data call: FATAL ends the shard (dropping the sample in progress), FAILED only the member.
  Step fail(const std::string& path, int64_t r) {
    if (r == ARCHIVE_FAILED) {
      on_error_(path, archive_message(a_) + "; member skipped");
      return Step::kNext;
    }
    on_error_(path, "truncated or corrupt archive: " + archive_message(a_));
    return Step::kFatal;
  }

  // Reads the member's bytes into the sample. `size` is the header's size, -1 if the header has none (not
  // so in tar, but libarchive allows it): then the data is read in blocks, up to the limit.
  Step read(const std::string& path, const std::string& ext, int64_t size) {
    std::string data;
    if (size >= 0) data.resize(static_cast<size_t>(size));
    // Without a size, up to one byte over the limit is read to tell "at the limit" from "over it".
    const size_t cap = max_bytes_ == SIZE_MAX ? max_bytes_ : max_bytes_ + 1;
    size_t got = 0;
    int retries = 0;
    for (;;) {
      if (got == data.size()) {
        if (size >= 0) break;
        if (data.size() >= cap) {
          on_error_(path, "member is over the limit of " + std::to_string(max_bytes_) + " bytes; member skipped");
          return skip(path);
        }
        data.resize(data.size() + std::min(cap - data.size(), kBlockSize));
      }
      const la_ssize_t n = archive_read_data(a_, &data[got], data.size() - got);
      if (n > 0) {
        got += static_cast<size_t>(n);
        retries = 0;
        continue;
      }
      if (n == 0) break;  // the member's end
      // WARN/RETRY: libarchive says it can go on; tried again a few times, never spinning forever.
      if ((n == ARCHIVE_WARN || n == ARCHIVE_RETRY) && ++retries <= kMaxRetries) continue;
      return fail(path, n == ARCHIVE_FAILED ? ARCHIVE_FAILED : ARCHIVE_FATAL);
    }
    if (size >= 0 && got != data.size()) {
      // libarchive ended the member before its header's size without an error: not trusted as data.
      on_error_(path,
                "member ended after " + std::to_string(got) + " of " + std::to_string(size) + " bytes; member skipped");
      return Step::kNext;
    }
    data.resize(got);
    sample_.members[ext] = std::move(data);
    return Step::kNext;
  }

  archive* a_;
  bool headers_only_;
  const std::function<bool(WebDatasetSample&)>& visit_;
  const ErrorFn& on_error_;
  size_t max_bytes_;
  WebDatasetSample sample_;
  bool have_sample_ = false;
};

}  // namespace

std::vector<std::string> expand_braces(const std::string& pattern) {
  // Split into literal text and groups first, so that the product's size is known before building it.
  std::vector<Piece> pieces;
  std::string literal;
  size_t total = 1;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '}') malformed(pattern, "'}' without '{'");
    if (pattern[i] != '{') {
      literal += pattern[i];
      continue;
    }
    const size_t close = pattern.find_first_of("{}", i + 1);
    if (close == std::string::npos || pattern[close] != '}') {
      malformed(pattern, close == std::string::npos ? "'{' without '}'" : "nested '{'");
    }
    const std::string body = pattern.substr(i + 1, close - i - 1);
    if (body.empty()) malformed(pattern, "empty group '{}'");
    Piece piece{std::move(literal), group_items(pattern, body)};
    literal.clear();
    if (total > kMaxExpansions / piece.items.size()) malformed(pattern, "more than 1000000 names");
    total *= piece.items.size();
    pieces.push_back(std::move(piece));
    i = close;
  }
  std::vector<std::string> out{""};
  for (const Piece& piece : pieces) {
    std::vector<std::string> next;
    next.reserve(out.size() * piece.items.size());
    for (const std::string& prefix : out) {
      for (const std::string& item : piece.items) next.push_back(prefix + piece.literal + item);
    }
    out = std::move(next);
  }
  for (std::string& s : out) s += literal;
  return out;
}

bool is_webdataset_shard(const std::string& path) {
  return ends_with_ci(path, ".tar") || ends_with_ci(path, ".tar.gz") || ends_with_ci(path, ".tgz");
}

bool split_webdataset_name(const std::string& member_path, std::string& key, std::string& extension) {
  // WebDataset: re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", path). An empty extension ("a.") is refused too:
  // no caller could look a member up by it.
  const size_t slash = member_path.rfind('/');
  const size_t base = slash == std::string::npos ? 0 : slash + 1;
  const size_t dot = member_path.find('.', base);
  if (dot == std::string::npos || dot == base || dot + 1 == member_path.size()) return false;
  key = member_path.substr(0, dot);
  extension = lower_ascii(member_path.substr(dot + 1));
  return true;
}

bool for_each_sample(const std::string& shard_path, bool headers_only,
                     const std::function<bool(WebDatasetSample&)>& visit, const ErrorFn& on_error,
                     size_t max_member_bytes) {
  ArchivePtr a(archive_read_new());
  if (!a) {
    on_error("", "cannot open " + shard_path + ": libarchive could not allocate a reader");
    return true;
  }
  // gzip is recognised by content (a .tar that is gzipped reads too); tar covers ustar, pax and GNU tar.
  // ARCHIVE_WARN here means an external gzip program stands in for zlib: still usable.
  if (archive_read_support_filter_gzip(a.get()) < ARCHIVE_WARN ||
      archive_read_support_format_tar(a.get()) < ARCHIVE_WARN) {
    on_error("", "cannot open " + shard_path + ": " + archive_message(a.get()));
    return true;
  }
  if (archive_read_open_filename(a.get(), shard_path.c_str(), kBlockSize) != ARCHIVE_OK) {
    // Opening also reads the first blocks, to recognise gzip and tar, so it fails for damaged files as well
    // as for unreadable ones. archive_errno is the system's errno when open/read failed, and libarchive's own
    // code otherwise: EILSEQ (its internal ARCHIVE_ERRNO_FILE_FORMAT) for data that is no tar, -1
    // (ARCHIVE_ERRNO_MISC) e.g. for "truncated gzip input".
    const int err = archive_errno(a.get());
    if (err > 0 && err != EILSEQ) {
      // (std::generic_category's message is strerror's text, without strerror's shared buffer.)
      on_error("", "cannot open " + shard_path + ": " + std::generic_category().message(err));
    } else {
      on_error("", "truncated or corrupt archive: " + archive_message(a.get()));
    }
    return true;
  }
  return ShardReader(a.get(), headers_only, visit, on_error, max_member_bytes).run();
}

}  // namespace groupvit_cli
