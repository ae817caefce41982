#include "loader/elf_file.hpp"

#include <elf.h>

#include <cstring>
#include <fstream>

#include "loader/plugin_error.hpp"

namespace shardline::loader {

ElfFile::ElfFile(const std::filesystem::path& path) : path_(path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw PluginError(path.string() + ": cannot open: " + std::strerror(errno));
  in.seekg(0, std::ios::end);
  bytes_.resize(static_cast<std::size_t>(in.tellg()));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(bytes_.data()), static_cast<std::streamsize>(bytes_.size()));
  if (!in) throw PluginError(path.string() + ": read failed");
}

namespace {
template <class T>
T load(const std::vector<std::byte>& b, std::size_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof(T));
  return v;
}
bool inside(std::uint64_t off, std::uint64_t len, std::size_t size) {
  return off <= size && len <= size - off;
}
/// Calls f(entry) for each whole entry of type T in `section` (ELF tables of fixed-size
/// records), until f returns false.
template <class T, class F>
void for_each_entry(std::span<const std::byte> section, F f) {
  for (std::size_t off = 0; off + sizeof(T) <= section.size(); off += sizeof(T)) {
    T entry;
    std::memcpy(&entry, section.data() + off, sizeof entry);
    if (!f(entry)) return;
  }
}
/// The NUL-terminated name at `offset` of a string table (cut at the table's end); empty if
/// the offset is outside it.
std::string name_at(std::span<const std::byte> strings, std::uint64_t offset) {
  if (offset >= strings.size()) return {};
  const char* name = reinterpret_cast<const char*>(strings.data() + offset);
  return {name, strnlen(name, strings.size() - offset)};
}
}  // namespace

std::string ElfFile::check_complete() const {
  const std::size_t size = bytes_.size();
  if (size < EI_NIDENT || std::memcmp(bytes_.data(), ELFMAG, SELFMAG) != 0)
    return "not an ELF file (no ELF magic number): is this really a compiled plugin?";
  if (size < sizeof(Elf64_Ehdr))
    return "truncated ELF file: " + std::to_string(size) + " bytes, shorter than an ELF header";
  const auto eh = load<Elf64_Ehdr>(bytes_, 0);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64)
    return "ELF file for another machine (need 64-bit x86-64)";
  if (eh.e_type != ET_DYN)
    return "ELF file is not a shared object (build it with shardline_add_plugin())";
  // Every header below is read whole at each entry's offset: an entry size smaller than the
  // header (a damaged or crafted file) would read past the table, and past the file.
  if ((eh.e_phnum > 0 && eh.e_phentsize != sizeof(Elf64_Phdr)) ||
      (eh.e_shnum > 0 && eh.e_shentsize != sizeof(Elf64_Shdr)))
    return "malformed ELF file: program or section header entries of " +
           std::to_string(eh.e_phentsize) + " and " + std::to_string(eh.e_shentsize) +
           " bytes, not " + std::to_string(sizeof(Elf64_Phdr)) + " and " +
           std::to_string(sizeof(Elf64_Shdr)) + " (is this file damaged?)";
  const std::uint64_t ph_end = eh.e_phoff + std::uint64_t{eh.e_phnum} * eh.e_phentsize;
  if (!inside(eh.e_phoff, std::uint64_t{eh.e_phnum} * eh.e_phentsize, size))
    return "truncated ELF file: program headers end at byte " + std::to_string(ph_end) +
           " but the file has " + std::to_string(size) + " (is the build still writing it?)";
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    const auto ph = load<Elf64_Phdr>(bytes_, eh.e_phoff + i * eh.e_phentsize);
    if (ph.p_type == PT_LOAD && !inside(ph.p_offset, ph.p_filesz, size))
      return "truncated ELF file: a loadable segment ends at byte " +
             std::to_string(ph.p_offset + ph.p_filesz) + " but the file has " +
             std::to_string(size) + " (is the build still writing it?)";
  }
  const std::uint64_t sh_len = std::uint64_t{eh.e_shnum} * eh.e_shentsize;
  if (eh.e_shoff == 0 || !inside(eh.e_shoff, sh_len, size))
    return "truncated ELF file: section headers end at byte " +
           std::to_string(eh.e_shoff + sh_len) + " but the file has " + std::to_string(size) +
           " (is the build still writing it?)";
  return {};
}

std::optional<std::span<const std::byte>> ElfFile::section(std::string_view name) const {
  const auto eh = load<Elf64_Ehdr>(bytes_, 0);
  if (eh.e_shstrndx == SHN_UNDEF || eh.e_shstrndx >= eh.e_shnum) return std::nullopt;
  const auto strtab = load<Elf64_Shdr>(bytes_, eh.e_shoff + eh.e_shstrndx * eh.e_shentsize);
  if (!inside(strtab.sh_offset, strtab.sh_size, bytes_.size())) return std::nullopt;
  for (unsigned i = 0; i < eh.e_shnum; ++i) {
    const auto sh = load<Elf64_Shdr>(bytes_, eh.e_shoff + i * eh.e_shentsize);
    if (sh.sh_name >= strtab.sh_size) continue;
    const char* s = reinterpret_cast<const char*>(bytes_.data() + strtab.sh_offset + sh.sh_name);
    const std::size_t max = strtab.sh_size - sh.sh_name;
    if (std::string_view(s, strnlen(s, max)) != name) continue;
    if (sh.sh_type == SHT_NOBITS || !inside(sh.sh_offset, sh.sh_size, bytes_.size()))
      return std::nullopt;
    return std::span<const std::byte>(bytes_.data() + sh.sh_offset, sh.sh_size);
  }
  return std::nullopt;
}

std::vector<std::string> ElfFile::needed() const {
  std::vector<std::string> out;
  const auto dynamic = section(".dynamic");
  const auto strings = section(".dynstr");
  if (!dynamic || !strings) return out;
  for_each_entry<Elf64_Dyn>(*dynamic, [&](const Elf64_Dyn& entry) {
    if (entry.d_tag == DT_NEEDED && entry.d_un.d_val < strings->size())
      out.push_back(name_at(*strings, entry.d_un.d_val));
    return entry.d_tag != DT_NULL;
  });
  return out;
}

std::vector<std::string> ElfFile::unique_symbols() const {
  std::vector<std::string> out;
  const auto symbols = section(".dynsym");
  const auto strings = section(".dynstr");
  if (!symbols || !strings) return out;
  for_each_entry<Elf64_Sym>(*symbols, [&](const Elf64_Sym& sym) {
    if (ELF64_ST_BIND(sym.st_info) == STB_GNU_UNIQUE && sym.st_name < strings->size())
      out.push_back(name_at(*strings, sym.st_name));
    return true;
  });
  return out;
}

}  // namespace shardline::loader
