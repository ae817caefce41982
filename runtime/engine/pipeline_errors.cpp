#include "engine/pipeline_errors.hpp"

#include <stdio_ext.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "connectors/sink.hpp"

namespace shardline::engine {

namespace {
/// Appends the byte as two lowercase hex digits.
void append_hex(std::string& out, unsigned char byte) {
  static constexpr char digits[] = "0123456789abcdef";
  out += digits[byte >> 4];
  out += digits[byte & 15];
}
}  // namespace

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  const auto escape = [&](unsigned char c) {
    out += "\\x";
    append_hex(out, c);
  };
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) escape(c); else out += static_cast<char>(c);
      ++i;
      continue;
    }
    // A UTF-8 sequence: its length from the lead byte, then continuation bytes 10xxxxxx
    // (overlong and surrogate forms are let through: the text stays printable either way).
    const std::size_t len = c >= 0xf0 && c < 0xf5 ? 4
                            : c >= 0xe0 && c < 0xf0 ? 3
                            : c >= 0xc2 && c < 0xe0 ? 2
                                                    : 0;
    bool valid = len != 0 && i + len <= text.size();
    for (std::size_t k = 1; valid && k < len; ++k)
      valid = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
    if (!valid) {
      escape(c);
      ++i;
      continue;
    }
    out.append(text.substr(i, len));
    i += len;
  }
  return out;
}

namespace {
/// Held around each write of a dead-letter record, by every pipeline. [shard and source threads]
std::mutex g_dead_letter_files;
}  // namespace

PipelineErrors::PipelineErrors(std::string pipeline, topology::ErrorPolicy policy,
                               const std::filesystem::path& dead_letter,
                               metrics::PipelineMetrics& metrics, StopFn stop)
    : pipeline_(std::move(pipeline)), policy_(policy), metrics_(metrics), stop_(std::move(stop)) {
  if (policy_ == topology::ErrorPolicy::dead_letter) {
    dead_letter_path_ = dead_letter.string();
    int fd = -1;
    try {
      fd = connectors::open_output(dead_letter_path_, true, &created_);
    } catch (const std::runtime_error& e) {
      throw std::runtime_error("pipeline '" + pipeline_ + "': cannot open dead-letter file " +
                               dead_letter_path_ + ": " + e.what());
    }
    dead_letter_ = ::fdopen(fd, "a");
    if (!dead_letter_) {
      ::close(fd);
      throw std::runtime_error("pipeline '" + pipeline_ + "': cannot open dead-letter file " +
                               dead_letter_path_ + ": out of memory");
    }
  }
}

PipelineErrors::~PipelineErrors() {
  if (dead_letter_) std::fclose(dead_letter_);
}

void PipelineErrors::remove_unstarted() {
  if (!dead_letter_) return;
  std::fclose(dead_letter_);
  dead_letter_ = nullptr;
  if (created_) ::unlink(dead_letter_path_.c_str());
}

void PipelineErrors::log_limited(const std::string& where, const std::string& line) {
  // [mutex_ held]
  auto& lim = limiters_[where];
  const auto now = std::chrono::steady_clock::now();
  if (now - lim.last < std::chrono::seconds(1)) {
    ++lim.held_back;
    lim.last_held_back = line;
    return;
  }
  // The lines held back came after the last line shown, which may be long ago (a burst of
  // failures, then quiet): the interval is that line's age, not a second.
  if (lim.held_back)
    spdlog::warn("{} ({} similar line(s) held back in the {:.1f} s since the last one)", line,
                 lim.held_back, std::chrono::duration<double>(now - lim.last).count());
  else
    spdlog::warn("{}", line);
  lim.last = now;
  lim.held_back = 0;
}

void PipelineErrors::flush_held_back() {
  std::lock_guard lock(mutex_);
  for (auto& [where, lim] : limiters_) {
    if (!lim.held_back) continue;
    spdlog::warn("{} (the last of {} similar line(s) held back)", lim.last_held_back,
                 lim.held_back);
    lim.held_back = 0;
  }
}

bool PipelineErrors::report(const std::string& where, const std::string& line) {
  // [mutex_ held]
  if (policy_ == topology::ErrorPolicy::stop) {
    // The messages already on their way still run, and may fail too: only the first stops.
    if (stopping_) {
      log_limited(where, line);
    } else {
      stopping_ = true;
      spdlog::error("{}; stopping (on_error = \"stop\")", line);
      stop_(line);
    }
    return false;
  }
  log_limited(where, line);
  return true;
}

void PipelineErrors::message_failed(std::string_view step, std::string_view what,
                                    std::span<const std::byte> payload, std::string_view where) {
  metrics_.add(metrics_.errors, 1);
  const std::string error =
      printable(where.empty() ? std::string(what) : std::string(where) + ": " + std::string(what));
  const std::string line =
      "pipeline '" + pipeline_ + "' step '" + std::string(step) + "': " + error;
  std::lock_guard lock(mutex_);
  if (!report(std::string(step), line) || !dead_letter_) return;
  // One line per failure: pipeline, step, error, then the message's bytes in hex.
  std::string hex;
  hex.reserve(payload.size() * 2);
  for (std::byte b : payload) append_hex(hex, std::to_integer<unsigned char>(b));
  // Pipelines may share a dead-letter file (each through its own FILE): a record that fails
  // half-way is cut back off only while no other pipeline can have written after it.
  std::lock_guard files(g_dead_letter_files);
  const off_t record_at = ::lseek(::fileno(dead_letter_), 0, SEEK_END);
  const bool written =
      std::fprintf(dead_letter_, "%s\t%.*s\t%s\t%s\n", pipeline_.c_str(),
                   static_cast<int>(step.size()), step.data(), error.c_str(), hex.c_str()) >= 0 &&
      std::fflush(dead_letter_) == 0;
  if (written) return;
  // A full disk: the message is neither processed nor kept.
  const int why = errno;
  metrics_.add(metrics_.dead_letters_lost, 1);
  if (!dead_letter_failed_)
    spdlog::error("pipeline '{}': cannot write the dead-letter file {}: {}; failed messages are "
                  "counted as dead letters lost from now on",
                  pipeline_, dead_letter_path_, std::strerror(why));
  dead_letter_failed_ = true;
  // No part of the record stays: neither the bytes that reached the file (the file ends with
  // whole records) nor those still buffered (they would go out before the next record).
  __fpurge(dead_letter_);
  if (record_at >= 0) (void)!::ftruncate(::fileno(dead_letter_), record_at);
  std::clearerr(dead_letter_);
}

void PipelineErrors::bad_input(std::string_view source, std::string_view what) {
  metrics_.add(metrics_.bad_input, 1);
  const std::string line =
      "pipeline '" + pipeline_ + "' source " + std::string(source) + ": " + std::string(what);
  // Not subject to on_error, which is about messages a plugin function throws on: bad framing
  // closes that one stream (a file, a connection), and the others carry on; a client that
  // sends garbage cannot stop the run.
  // Held back only behind lines of the same kind (the same text up to its first number): a
  // truncated frame does not hide an oversized one.
  std::lock_guard lock(mutex_);
  log_limited("source: " + std::string(what.substr(0, what.find_first_of("0123456789"))), line);
}

}  // namespace shardline::engine
