// Fuzz target: the ELF checks the loader runs on a plugin file before dlopen (loader/elf_file).
//
// The loader reads these from files a build may still be writing, or that were damaged or
// crafted: any bytes must give check_complete() an error text, or a file whose sections,
// needed libraries and unique symbols can be read without a crash or a read outside the file.
// The sections handed back must lie inside the bytes read. The first unique symbol is
// demangled, as the loader does for its refusal message.
#include <cxxabi.h>

#include <cstdlib>
#include <span>
#include <string>

#include <shardline/abi.hpp>

#include "fuzz_support.hpp"
#include "loader/elf_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto file = shardline_fuzz::scratch_path("plugin.so");
  shardline_fuzz::write_file(file, data, size);
  const shardline::loader::ElfFile elf(file);
  const auto& bytes = elf.bytes();
  FUZZ_CHECK(bytes.size() == size);
  if (!elf.check_complete().empty()) return 0;

  const std::byte* begin = bytes.data();
  const std::byte* end = begin + bytes.size();
  for (const char* name : {shardline::kAbiSection, ".dynamic", ".dynstr", ".dynsym", ""}) {
    if (const auto s = elf.section(name)) {
      FUZZ_CHECK(s->empty() || (s->data() >= begin && s->data() <= end &&
                                s->size() <= static_cast<std::size_t>(end - s->data())));
    }
  }
  for (const std::string& library : elf.needed()) FUZZ_CHECK(library.size() < size);
  const auto unique = elf.unique_symbols();
  for (const std::string& symbol : unique) FUZZ_CHECK(symbol.size() < size);
  if (!unique.empty()) {
    int status = 0;
    char* readable = abi::__cxa_demangle(unique.front().c_str(), nullptr, nullptr, &status);
    std::free(readable);
  }
  return 0;
}
