// Fuzzes the CLIP tokenizer with arbitrary bytes: ids or a TokenizerError (invalid UTF-8),
// never a crash; truncated encodings keep BOS first and EOS last. The vocabulary comes from
// GROUPVIT_BPE (scripts/fuzz.sh sets it to open_clip's bpe_simple_vocab_16e6.txt.gz).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "groupvit/text/tokenizer.h"

static std::unique_ptr<groupvit::ClipTokenizer> tokenizer;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* path = std::getenv("GROUPVIT_BPE");
  if (!path) {
    std::fprintf(stderr, "set GROUPVIT_BPE to bpe_simple_vocab_16e6.txt.gz\n");
    std::exit(1);
  }
  tokenizer = std::make_unique<groupvit::ClipTokenizer>(groupvit::ClipTokenizer::from_bpe_gz(path));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto e = tokenizer->encode(text, groupvit::ClipTokenizer::kContextLength);
    if (e.input_ids.size() < 2 || e.input_ids.size() > 77 || e.input_ids.front() != tokenizer->bos_id() ||
        e.input_ids.back() != tokenizer->eos_id())
      __builtin_trap();
  } catch (const groupvit::TokenizerError&) {
  }
  return 0;
}
