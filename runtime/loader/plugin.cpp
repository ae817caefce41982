#include "loader/plugin.hpp"

#include <cxxabi.h>
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/dll/shared_library.hpp>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <shardline/abi.hpp>
#include <string_view>
#include <tuple>

#include "loader/elf_file.hpp"
#include "loader/plugin_call.hpp"

namespace shardline::loader {

std::string describe(const AbiRecord& abi) {
  const std::string_view version(abi.sdk_version, strnlen(abi.sdk_version, sizeof abi.sdk_version));
  return "SDK ABI " + std::to_string(abi.sdk_abi) + " (SDK " + std::string(version) + ", g++ " +
         std::to_string(abi.compiler_major) + "." + std::to_string(abi.compiler_minor) +
         ", " + (abi.cxx11_abi ? "C++11 string ABI" : "old string ABI") + ", spdlog " +
         std::to_string(abi.spdlog_version / 10000) + "." +
         std::to_string(abi.spdlog_version / 100 % 100) + "." +
         std::to_string(abi.spdlog_version % 100) + ")";
}

bool Plugin::built_with_sdk(int major, int minor, int patch) const {
  // "MAJOR.MINOR.PATCH", each part its leading digits (a part missing counts as 0). A
  // pre-release ("0.2.4-rc1") comes before its release, as in semantic versioning.
  int got[3] = {0, 0, 0};
  const char* at = sdk_version_.data();
  const char* const end = at + sdk_version_.size();
  for (int& part : got) {
    at = std::from_chars(at, end, part).ptr;
    if (at == end || *at != '.') break;
    ++at;
  }
  const bool release = sdk_version_.find('-') == std::string::npos;
  return std::tuple(got[0], got[1], got[2], release) >= std::tuple(major, minor, patch, true);
}

namespace {

/// The plugin's ABI record, if this host can run it; throws PluginError otherwise.
AbiRecord check_abi(const std::filesystem::path& file, const ElfFile& elf) {
  const auto section = elf.section(kAbiSection);
  if (!section)
    throw PluginError(file.string() +
                      ": not a Shardline plugin: it has no shardline_abi record (define it with "
                      "SHARDLINE_PLUGIN and build it with shardline_add_plugin())");
  AbiRecord abi{};
  if (section->size() != sizeof abi)
    throw PluginError(file.string() + ": the shardline_abi record is " +
                      std::to_string(section->size()) + " bytes, not a record of this SDK (" +
                      std::to_string(sizeof abi) + " bytes): rebuild the plugin against this SDK");
  if (std::memcmp(section->data(), kAbiRecord.magic, sizeof abi.magic) != 0)
    throw PluginError(file.string() + ": the shardline_abi record does not start with the "
                      "Shardline magic number: rebuild the plugin against this SDK");
  std::memcpy(&abi, section->data(), sizeof abi);
  const AbiRecord& host = kAbiRecord;
  if (abi.sdk_abi != host.sdk_abi || abi.compiler_major != host.compiler_major ||
      abi.cxx11_abi != host.cxx11_abi || abi.spdlog_version != host.spdlog_version)
    throw PluginError(file.string() + ": ABI mismatch: the plugin was built for " +
                      describe(abi) + ", but this host runs " + describe(host) +
                      "; rebuild the plugin against this host's SDK" +
                      (abi.cxx11_abi != host.cxx11_abi
                           ? std::string(", without -D_GLIBCXX_USE_CXX11_ABI=") +
                                 (abi.cxx11_abi ? "1" : "0") + " in its compiler flags"
                           : std::string()));
  return abi;
}

/// AddressSanitizer's runtime must be the first library of a process: dlopen-ing a plugin that
/// needs it into a host without it does not fail, it ends the process (the runtime prints one
/// line and exits), which during a hot reload would take the running pipelines with it. So such
/// a plugin is refused before dlopen. (UndefinedBehaviorSanitizer's runtime loads late without
/// harm; ThreadSanitizer's fails dlopen cleanly.)
void check_sanitizer_runtime(const std::filesystem::path& file, const ElfFile& elf) {
  for (const std::string& library : elf.needed()) {
    if (!library.starts_with("libasan.so")) continue;
    if (void* loaded = ::dlopen(library.c_str(), RTLD_LAZY | RTLD_NOLOAD)) {
      ::dlclose(loaded);  // this host runs with it: nothing to refuse
      continue;
    }
    throw PluginError(file.string() + ": built with AddressSanitizer (it needs " + library +
                      "), but this host is not, and loading it would end the process: run it "
                      "in a host built with the same sanitizer (in Shardline's source tree, "
                      "`cmake --preset asan && cmake --build build-asan` builds "
                      "build-asan/shardline), or rebuild it without -fsanitize=address");
  }
}

/// A library with an STB_GNU_UNIQUE symbol stays mapped after dlclose, and the next build of it
/// would be bound to the old copy's unique objects: a reload would run new code against the old
/// build's data (type descriptions, statics), silently. So such a build is refused before it is
/// ever loaded. shardline_add_plugin() builds with -fno-gnu-unique; other build systems need it.
void check_unloadable(const std::filesystem::path& file, const ElfFile& elf) {
  const auto unique = elf.unique_symbols();
  if (unique.empty()) return;
  int status = 0;
  char* readable = abi::__cxa_demangle(unique.front().c_str(), nullptr, nullptr, &status);
  const std::string example = status == 0 && readable ? readable : unique.front();
  std::free(readable);
  throw PluginError(file.string() + ": has " + std::to_string(unique.size()) +
                    " STB_GNU_UNIQUE symbol(s) (e.g. " + example +
                    "), so it could never be unloaded and a hot reload would mix two builds' "
                    "data: build it with shardline_add_plugin(), or compile it with "
                    "-fno-gnu-unique and -fvisibility=hidden");
}

/// Boost.DLL wraps the dlerror() text ("undefined symbol: ...") in its own message: keep it.
std::string dlopen_reason(std::string_view boost_message) {
  constexpr std::string_view tag = "dlerror system message: ";
  const auto at = boost_message.find(tag);
  if (at == std::string_view::npos) return std::string(boost_message);
  // "... (dlerror system message: REASON): Bad file descriptor"
  auto reason = boost_message.substr(at + tag.size());
  if (const auto close = reason.rfind(')'); close != std::string_view::npos)
    reason = reason.substr(0, close);
  return std::string(reason);
}

/// dlerror's "undefined symbol: _Z6helperB5cxx11St17basic_string_viewIcSt11char_traitsIcEE"
/// names a C++ function only by its mangled name, and not what to do about it: the plugin calls
/// something that neither it nor a library it was linked with defines.
std::string explain_undefined_symbol(std::string reason) {
  constexpr std::string_view tag = "undefined symbol: ";
  const auto at = reason.find(tag);
  if (at == std::string::npos) return reason;
  const auto begin = at + tag.size();
  const auto end = std::min(reason.find_first_of(" \t(", begin), reason.size());
  const std::string symbol = reason.substr(begin, end - begin);
  int status = 0;
  char* readable = abi::__cxa_demangle(symbol.c_str(), nullptr, nullptr, &status);
  if (status == 0 && readable) reason.replace(begin, end - begin, readable + (" (" + symbol + ")"));
  std::free(readable);
  return reason + ": the plugin uses it, but neither the plugin nor a library it links defines "
                  "it; define it, or link the library that does (shardline_add_plugin(... "
                  "LIBRARIES ...), whose -Wl,-z,defs makes this an error of the plugin's build)";
}

/// Numbers the shadow copies of this process.
std::atomic<unsigned> g_shadows{0};

/// The path of shadow copy number `n` of a plugin (same directory for every load of a process).
std::filesystem::path shadow_path(const std::filesystem::path& file, unsigned n) {
  static const pid_t host = ::getpid();
  std::error_code ec;
  const auto tmp = std::filesystem::temp_directory_path(ec);
  if (ec)  // e.g. TMPDIR names a folder that is not there
    throw PluginError(file.string() + ": no folder for its shadow copy: " + ec.message() +
                      " (TMPDIR=" + (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "") +
                      "; point TMPDIR at a writable folder)");
  return tmp / ("shardline-" + std::to_string(host)) /
         (file.stem().string() + "." + std::to_string(n) + ".so");
}

/// Tells builds of a plugin apart.
std::size_t hash_of(const std::vector<std::byte>& bytes) {
  return std::hash<std::string_view>()(
      std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

/// Removes a file, then its folder if that is empty.
void remove_with_folder(const std::filesystem::path& file) {
  std::error_code ignored;
  std::filesystem::remove(file, ignored);
  std::filesystem::remove(file.parent_path(), ignored);  // only if empty
}

}  // namespace

std::shared_ptr<Plugin> Plugin::load(const std::filesystem::path& file, Trial trial) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) {
    // Something there that is not a file is not "no such file": say what it is.
    if (std::filesystem::is_directory(file, ec))
      throw PluginError(file.string() + ": is a folder, not a plugin file (name the .so in it)");
    if (std::filesystem::exists(file, ec))
      throw PluginError(file.string() + ": is not a regular file (a FIFO, a socket or a "
                        "device), so not a plugin file");
    throw PluginError(file.string() + ": no such plugin file");
  }
  ElfFile elf(file);
  if (auto why = elf.check_complete(); !why.empty()) throw PluginError(file.string() + ": " + why);
  const AbiRecord abi = check_abi(file, elf);
  check_sanitizer_runtime(file, elf);
  check_unloadable(file, elf);

  const auto shadow = shadow_path(file, g_shadows++);
  std::filesystem::create_directories(shadow.parent_path(), ec);
  {
    // The bytes checked above, not the file again: a build landing meanwhile is never mapped
    // unchecked.
    std::ofstream out(shadow, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(elf.bytes().data()),
              static_cast<std::streamsize>(elf.bytes().size()));
    out.close();
    if (!out) {
      const std::string why = std::strerror(errno);
      remove_with_folder(shadow);
      throw PluginError(file.string() + ": cannot make a shadow copy at " + shadow.string() +
                        ": " + why);
    }
  }
  // Removed however the load ends (a mapping stays valid without its file), with the folder
  // once it is empty: nothing is left to clean up later.
  struct RemoveShadow {
    const std::filesystem::path& shadow;
    ~RemoveShadow() { remove_with_folder(shadow); }
  } const remove_shadow{shadow};
  std::shared_ptr<Plugin> plugin(new Plugin());
  plugin->file_ = file;
  plugin->shadow_ = shadow;
  plugin->build_hash_ = hash_of(elf.bytes());
  plugin->sdk_version_.assign(abi.sdk_version, strnlen(abi.sdk_version, sizeof abi.sdk_version));
  if (trial == Trial::in_copy_first) {
    // The very bytes the host maps next, so no build landing meanwhile goes untried. The copy
    // throws what the host would; only a crash or a hang is its verdict.
    const auto tried = crash_in_copy([&] { plugin->open(); }, std::chrono::seconds(5));
    if (tried.failed()) throw PluginError(file.string() + ": loading it " + tried.failure());
  }
  plugin->open();
  return plugin;
}

void Plugin::open() {
  // dlopen runs the plugin's static constructors, and the entry point its registrations: plugin
  // code, named as such if it crashes.
  const std::string loading = "the loading of " + file_.string() +
                              " (static constructors, registrations)";
  const PluginCall in("", loading);
  try {
    library_ = std::make_unique<boost::dll::shared_library>(
        shadow_, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    // dlerror names the shadow copy, which is about to go: name the user's file instead.
    std::string reason = dlopen_reason(e.what());
    for (auto at = reason.find(shadow_.string()); at != std::string::npos;
         at = reason.find(shadow_.string()))
      reason.replace(at, shadow_.string().size(), file_.string());
    throw PluginError(file_.string() + ": failed to load: " + explain_undefined_symbol(reason));
  }
  if (!library_->has(kEntryPoint))
    throw PluginError(file_.string() + ": not a Shardline plugin: no " + std::string(kEntryPoint) +
                      " entry point (define the plugin with SHARDLINE_PLUGIN)");
  const auto entry = library_->get<const Manifest*()>(kEntryPoint);
  try {
    manifest_ = entry();
  } catch (...) {
    throw PluginError(file_.string() + ": the plugin's manifest threw: " +
                      current_exception_text());
  }
  if (!manifest_->error.empty())
    throw PluginError(file_.string() + ": plugin '" + manifest_->plugin_name +
                      "' failed to register its components: " + manifest_->error);
}

Plugin::~Plugin() = default;

bool Plugin::rebuilt() const {
  try {
    return hash_of(ElfFile(file_).bytes()) != build_hash_;
  } catch (const PluginError&) {
    return false;  // gone or unreadable: not a build to load
  }
}

const ComponentInfo* Plugin::find(ComponentKind kind, std::string_view name) const {
  for (const auto& c : manifest_->components)
    if (c.kind == kind && c.name == name) return &c;
  return nullptr;
}

std::string Plugin::names_of(ComponentKind kind) const {
  std::string out;
  for (const auto& c : manifest_->components) {
    if (c.kind != kind) continue;
    if (!out.empty()) out += ", ";
    out += c.name;
  }
  return out.empty() ? "none" : out;
}

}  // namespace shardline::loader
