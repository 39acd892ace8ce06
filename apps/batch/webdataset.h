// WebDataset shards (https://github.com/webdataset/webdataset): POSIX tar files, optionally gzipped, whose
// members are grouped into samples by key, read here with libarchive. Only the C++ standard library and
// libarchive: no LibTorch, no OpenCV, so the reader can be tested and fuzzed on its own.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace groupvit_cli {

// Brace expansion as WebDataset (through the braceexpand package) does it on shard URLs:
//   "a-{000..002}.tar"      -> a-000.tar a-001.tar a-002.tar (zero padded to the wider bound when a bound
//                              has a leading zero: {8..10} -> 8 9 10, {08..10} -> 08 09 10)
//   "{a,b,c}", "x{,-hi}"    -> a b c; x x-hi (list items are literal; an empty item is allowed)
//   "{a,b}-{0..1}"          -> a-0 a-1 b-0 b-1 (several groups: cartesian product, leftmost slowest)
// A group holding a ',' is a list, else it must be a range LO..HI of decimal digits. Not supported (and
// refused rather than guessed at): nesting, escapes, steps ({0..10..2}), letter and descending ranges.
// A pattern without braces yields itself. Throws std::invalid_argument naming the pattern for malformed
// ones: unbalanced or nested braces, an empty group "{}", a group that is neither list nor range, a
// descending or non-numeric range, more than 1,000,000 results.
std::vector<std::string> expand_braces(const std::string& pattern);

// True for names ending in .tar, .tar.gz or .tgz (ASCII case-insensitive): such an input is a WebDataset
// shard. Only the name is looked at; the reader recognises gzip by content, not by name.
bool is_webdataset_shard(const std::string& path);

struct WebDatasetSample {
  // WebDataset's __key__: the member path up to the first '.' of its base name ("sub/000002.seg.png" ->
  // "sub/000002"), case kept.
  std::string key;
  // Extension (ASCII lower-cased, everything after that first '.': "jpg", "seg.png", "txt", "json") -> the
  // member's bytes ("" for every member when headers_only).
  std::map<std::string, std::string> members;
};

// Streams one shard in archive order (one pass, constant memory beyond the current sample). Consecutive
// members with the same key form one sample, as WebDataset's group_by_keys does; visit(sample) is called
// once per sample that has at least one member; for_each_sample returns false as soon as visit returns
// false, true otherwise (errors included). A key that comes back later, after other keys, starts another
// sample with the same key: detecting duplicate keys across samples or shards is the caller's job.
//
// Skipped without a report (WebDataset skips them too): directories, symlinks, hard links and other
// non-regular members; members whose base name starts with '.' or has no '.' (split_webdataset_name).
//
// Problems are reported through on_error(where, message), `where` being the member's path ("" for the
// archive itself), and never thrown:
//  * a shard that cannot be opened: on_error("", "cannot open PATH: <strerror>"), returns true;
//  * a truncated or corrupt archive (a cut-off .tar or .tar.gz, a file that is no tar, an empty file): one
//    on_error call, message "truncated or corrupt archive: <libarchive's text>", after which the shard ends.
//    The samples completed before the damage have been visited; the sample in progress, which may lack
//    members, is dropped (also when the damage is in the header that would have started the next sample).
//    `where` is the member whose data was cut, or "" when a header or the start of the file is damaged.
//    A plain .tar loses nothing else. A .tar.gz can lose up to 64 KiB (uncompressed) more: libarchive's gzip
//    filter inflates in 64 KiB blocks and drops the partly filled one when the input ends early (so a cut
//    within the first 64 KiB fails the whole shard, already when opening it);
//  * a member larger than max_member_bytes: reported and skipped (also when headers_only, so that both
//    modes yield the same samples), the rest of its sample is kept;
//  * a second member with the same extension in one sample (WebDataset raises here): reported and
//    skipped, the first one is kept;
//  * a member libarchive cannot read but can step over (ARCHIVE_FAILED): reported and skipped.
// libarchive's warnings (ARCHIVE_WARN: a malformed pax attribute, a name not convertible to the locale)
// do not lose data and are not reported.
//
// headers_only=true reads only the headers and skips the members' bytes (seeks over them in a plain .tar),
// for a fast counting pass: same samples, keys, extensions and errors (a seek past the end of a cut .tar is
// detected by libarchive as "Truncated input file"), all values "".
bool for_each_sample(const std::string& shard_path, bool headers_only,
                     const std::function<bool(WebDatasetSample&)>& visit,
                     const std::function<void(const std::string& where, const std::string& message)>& on_error,
                     size_t max_member_bytes = size_t(256) << 20);

// Splits a member path as WebDataset's base_plus_ext does: key = the path up to the first '.' of the base
// name, extension = the rest, lower-cased. False (nothing set) for a base name that is empty, starts with
// '.', has no '.' or ends in its first '.'. (WebDataset 1.0.2's regex ^((?:.*/|)[^.]+)[.]([^/]*)$ differs
// on two of these: "sub/.hidden.txt" gives it key "sub/", "a." extension ""; both are skipped here.)
bool split_webdataset_name(const std::string& member_path, std::string& key, std::string& extension);

}  // namespace groupvit_cli
