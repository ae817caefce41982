// Word count, the hello world of Shardline: lines -> lower-case words -> running count per word.
#include <cctype>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include <shardline/plugin.hpp>

namespace word_count {
struct WordCount {
  std::uint64_t count = 0;
};
}  // namespace word_count

SHARDLINE_PLUGIN("word_count", "1.0.0", p) {
  using word_count::WordCount;
  p.decoder("line", [](std::string_view line) { return std::string(line); });
  p.computation("split", [](const std::string& line, shardline::Emit<std::string>& emit) {
    std::string word;
    for (const unsigned char c : line) {
      if (std::isalnum(c) || c == '\'') word += static_cast<char>(std::tolower(c));
      else if (!word.empty()) emit(std::exchange(word, {}));
    }
    if (!word.empty()) emit(std::move(word));
  });
  p.partition("word", [](const std::string& w) { return std::string_view(w); });
  p.state<WordCount>("count");
  p.state_computation("count", [](const std::string& w, WordCount& c) {
    return w + " " + std::to_string(++c.count);
  });
  p.encoder("text", [](const std::string& s) { return s; });
}
