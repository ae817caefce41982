// shardline/bytes.hpp — reading and writing binary wire formats in decoders and encoders.
//
// Reader walks one frame and throws DecodeError (with the offset) on a short read, so a
// decoder written as a straight sequence of reads rejects truncated input by itself. Writer
// appends to the sink's framed output. Multi-byte numbers are big-endian (network order)
// unless the name says otherwise.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

#include <shardline/boundary.hpp>

namespace shardline {

/// Thrown by Reader (and by decoders) for input that does not match the format. Its text is
/// reported whole, NUL bytes included (what() would stop at the first, and a message quoting
/// binary input may hold some).
struct SHARDLINE_API DecodeError : std::runtime_error {
  explicit DecodeError(const std::string& what) : std::runtime_error(what), text_(what) {}
  explicit DecodeError(const char* what) : DecodeError(std::string(what)) {}
  std::string_view text() const noexcept { return text_; }

 private:
  std::string text_;
};

class Reader {
 public:
  explicit Reader(Frame frame) : p_(frame.data), size_(frame.size) {}

  std::size_t size() const { return size_; }
  std::size_t offset() const { return pos_; }
  std::size_t remaining() const { return size_ - pos_; }

  std::uint8_t u8() { return static_cast<std::uint8_t>(*take(1)); }
  std::uint16_t u16be() { return load_be<std::uint16_t>(); }
  std::uint32_t u32be() { return load_be<std::uint32_t>(); }
  std::uint64_t u64be() { return load_be<std::uint64_t>(); }
  double f64be() { return std::bit_cast<double>(load_be<std::uint64_t>()); }
  /// The next n bytes as text (a view into the frame).
  std::string_view text(std::size_t n) { return {reinterpret_cast<const char*>(take(n)), n}; }
  /// Copies the next N bytes into a fixed array (e.g. a 4-byte symbol).
  template <std::size_t N>
  void copy_to(char (&dst)[N]) {
    std::memcpy(dst, take(N), N);
  }
  /// Throws unless every byte was read: a frame longer than its format is bad input too.
  void expect_end() const {
    if (pos_ != size_) [[unlikely]]
      throw_too_long(size_, pos_);
  }

 private:
  // The checks stay inline (every field of every message goes through take()); building the
  // error text is out of line, so take() is small enough for the compiler to inline. The
  // throwing helpers take values, not `this`: a Reader whose address never escapes stays in
  // registers instead of being written to memory at every field.
  const std::byte* take(std::size_t n) {
    if (n > size_ - pos_) [[unlikely]]
      throw_truncated(n, pos_, size_);
    const std::byte* at = p_ + pos_;
    pos_ += n;
    return at;
  }
  [[noreturn, gnu::cold, gnu::noinline]] static void throw_truncated(std::size_t n,
                                                                     std::size_t pos,
                                                                     std::size_t size) {
    throw DecodeError("truncated frame: need " + std::to_string(n) + " bytes at offset " +
                      std::to_string(pos) + ", frame has " + std::to_string(size));
  }
  [[noreturn, gnu::cold, gnu::noinline]] static void throw_too_long(std::size_t size,
                                                                    std::size_t pos) {
    throw DecodeError("frame has " + std::to_string(size) + " bytes, format uses " +
                      std::to_string(pos));
  }
  template <class U>
  U load_be() {
    U v;
    std::memcpy(&v, take(sizeof(U)), sizeof(U));
    if constexpr (std::endian::native == std::endian::little) v = byteswap(v);
    return v;
  }
  template <class U>
  static U byteswap(U v) {
    if constexpr (sizeof(U) == 2) return __builtin_bswap16(v);
    if constexpr (sizeof(U) == 4) return __builtin_bswap32(v);
    if constexpr (sizeof(U) == 8) return __builtin_bswap64(v);
  }

  const std::byte* p_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

/// Writes fields at the end of an EncodedOutput, in network byte order. The write position
/// lives in the Writer itself (a local the compiler keeps in registers), not in the output, so
/// a field is one bounds check and one copy; it is handed back to the output when the Writer
/// is destroyed.
class Writer {
 public:
  explicit Writer(EncodedOutput& out)
      : out_(out), pos_(out.position()), limit_(out.limit()) {}
  ~Writer() { out_.advance_to(pos_); }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void u8(std::uint8_t v) { put(&v, 1); }
  void u16be(std::uint16_t v) { store_be(__builtin_bswap16(v)); }
  void u32be(std::uint32_t v) { store_be(__builtin_bswap32(v)); }
  void u64be(std::uint64_t v) { store_be(__builtin_bswap64(v)); }
  void f64be(double v) { u64be(std::bit_cast<std::uint64_t>(v)); }
  void bytes(const void* p, std::size_t n) { put(p, n); }
  void text(std::string_view s) { put(s.data(), s.size()); }

 private:
  struct Room {
    std::byte* pos;
    std::byte* limit;
  };
  // Static, so that the Writer's address never escapes: a byte store could otherwise alias
  // it, and every field would reload the position from memory.
  [[gnu::noinline]] static Room grow(EncodedOutput& out, std::byte* pos, std::size_t n) {
    out.advance_to(pos);
    out.reserve(n);
    return {out.position(), out.limit()};
  }
  void put(const void* p, std::size_t n) {
    if (static_cast<std::size_t>(limit_ - pos_) < n) {
      const Room r = grow(out_, pos_, n);
      pos_ = r.pos;
      limit_ = r.limit;
    }
    std::memcpy(pos_, p, n);
    pos_ += n;
  }
  template <class U>
  void store_be(U swapped) {
    static_assert(std::endian::native == std::endian::little);
    put(&swapped, sizeof(U));
  }
  EncodedOutput& out_;
  std::byte* pos_;
  std::byte* limit_;
};

}  // namespace shardline
