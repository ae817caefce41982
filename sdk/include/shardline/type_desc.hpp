// shardline/type_desc.hpp — the TypeDesc of a C++ type: what the host needs to move, destroy,
// save and restore values of a type it does not know.
//
// A state type may say how to carry its values across a hot reload:
//   struct SymbolData {
//     static constexpr std::uint32_t schema_version = 2;   // bump when the layout changes
//     void save(shardline::Writer& out) const;             // write the value
//     static SymbolData restore(shardline::Reader& in, std::uint32_t version);  // read any
//   };                                                     // earlier version's saved form
// With the same fingerprint (name, size, alignment, trivially copyable or not, schema_version)
// and no vtable, the new version of a plugin keeps the old objects as they are; otherwise the
// host saves every value with the old plugin and restores it with the new one.
#pragma once

#include <concepts>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include <shardline/boundary.hpp>
#include <shardline/bytes.hpp>
#include <shardline/key.hpp>

namespace shardline {
namespace detail {

template <class T>
void relocate(void* dst, void* src) noexcept {
  T* s = static_cast<T*>(src);
  ::new (dst) T(std::move(*s));
  s->~T();
}

template <class T>
void destroy(void* p) noexcept {
  static_cast<T*>(p)->~T();
}

template <class T>
concept HasSchemaVersion = requires {
  { T::schema_version } -> std::convertible_to<std::uint32_t>;
};
template <class T>
concept Saveable = requires(const T& t, Writer& w) { t.save(w); };
template <class T>
concept Restorable = requires(Reader& r, std::uint32_t v) {
  { T::restore(r, v) } -> std::same_as<T>;
};
/// T has a member function named save / restore, whatever its signature: one that is not
/// Saveable / Restorable is a mistake the SDK would otherwise silently ignore.
template <class T>
concept NamesSave = requires { requires std::is_member_function_pointer_v<decltype(&T::save)>; };
template <class T>
concept NamesRestore =
    requires { requires std::is_function_v<std::remove_pointer_t<decltype(&T::restore)>> ||
                            std::is_member_function_pointer_v<decltype(&T::restore)>; };

template <class T>
constexpr std::uint32_t schema_version_of() {
  if constexpr (HasSchemaVersion<T>) {
    return static_cast<std::uint32_t>(T::schema_version);
  } else {
    return 0;
  }
}

/// FNV-1a: constexpr, so the fingerprint is a constant of the plugin, computed at build time.
constexpr std::uint64_t fnv1a(std::uint64_t h, std::string_view s) {
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  return h;
}
constexpr std::uint64_t fnv1a(std::uint64_t h, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) h = (h ^ ((v >> (8 * i)) & 0xff)) * 0x100000001b3ULL;
  return h;
}

template <class T>
constexpr std::uint64_t fingerprint() {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  h = fnv1a(h, type_name<T>());
  h = fnv1a(h, sizeof(T));
  h = fnv1a(h, alignof(T));
  h = fnv1a(h, std::is_trivially_copyable_v<T> ? 1 : 0);
  return fnv1a(h, schema_version_of<T>());
}

template <class T>
void save(const void* value, std::vector<std::byte>& out) {
  // The framing applies only between begin_message() and end_message(), which save() never
  // calls: what the Writer writes is appended as it is.
  EncodedOutput bytes(out, Framing::lines);
  Writer writer(bytes);
  static_cast<const T*>(value)->save(writer);
}

template <class T>
void restore(void* dst, const std::byte* data, std::size_t size, std::uint32_t version) {
  Reader reader(Frame{data, static_cast<std::uint32_t>(size)});
  ::new (dst) T(T::restore(reader, version));
}

template <class T>
constexpr auto save_fn() -> void (*)(const void*, std::vector<std::byte>&) {
  if constexpr (Saveable<T>) {
    return &save<T>;
  } else {
    return nullptr;
  }
}

template <class T>
constexpr auto restore_fn()
    -> void (*)(void*, const std::byte*, std::size_t, std::uint32_t) {
  if constexpr (Restorable<T>) {
    return &restore<T>;
  } else {
    return nullptr;
  }
}

}  // namespace detail

/// The TypeDesc of T. A constant: no guard variable, nothing runs at load time.
template <class T>
inline constexpr TypeDesc type_desc_v{
    type_name<T>(),
    sizeof(T),
    alignof(T),
    std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>,
    std::is_polymorphic_v<T>,
    detail::schema_version_of<T>(),
    detail::fingerprint<T>(),
    &detail::relocate<T>,
    &detail::destroy<T>,
    detail::save_fn<T>(),
    detail::restore_fn<T>(),
};

}  // namespace shardline
