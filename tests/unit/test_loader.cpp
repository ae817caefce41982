// Plugin::load: the valid test plugin's manifest, every load-failure path (each asserted on its
// exact message), shadow copies, and unmapping once the last reference goes.
#include <elf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <shardline/abi.hpp>
#include <shardline/boundary.hpp>
#include <shardline/key.hpp>

#include "engine/message_buffer.hpp"
#include "loader/elf_file.hpp"
#include "loader/plugin.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using shardline::ComponentKind;
using shardline::loader::Plugin;
using shardline::loader::PluginError;
using shardline_test::ErrorLog;
using shardline_test::push;
using shardline_test::Reports;
using shardline_test::read_file;
using shardline_test::test_plugin;

namespace {

/// A fresh folder for this file's tests.
struct TempDir : shardline_test::TempDir {
  TempDir() : shardline_test::TempDir("shardline-loader-test-") {}
};

/// What Plugin::load(file) throws, or "<loaded>" if it does not throw.
std::string load_error(const fs::path& file) {
  try {
    Plugin::load(file);
  } catch (const PluginError& e) {
    return e.what();
  }
  return "<loaded>";
}

/// The distinct shadow copies of plugins this process has mapped, from /proc/self/maps.
std::set<std::string> mapped_shadow_copies() {
  const std::string dir = "/shardline-" + std::to_string(::getpid()) + "/";
  std::ifstream maps("/proc/self/maps");
  std::set<std::string> out;
  std::string line;
  while (std::getline(maps, line)) {
    const auto at = line.find(dir);
    if (at == std::string::npos) continue;
    const auto start = line.rfind(' ', at) + 1;  // the path column starts after the last space
    out.insert(line.substr(start, line.find(' ', at) - start));
  }
  return out;
}

std::vector<std::string> names_in(const std::set<std::string>& all, const std::set<std::string>& minus) {
  std::vector<std::string> out;
  for (const auto& s : all)
    if (!minus.count(s)) out.push_back(s);
  return out;
}

/// The file offset of the shardline_abi section's header in an ELF image, and the header.
std::pair<std::size_t, Elf64_Shdr> abi_section(const std::string& elf) {
  Elf64_Ehdr eh;
  std::memcpy(&eh, elf.data(), sizeof eh);
  Elf64_Shdr names;
  std::memcpy(&names, elf.data() + eh.e_shoff + eh.e_shstrndx * eh.e_shentsize, sizeof names);
  for (unsigned i = 0; i < eh.e_shnum; ++i) {
    const std::size_t at = eh.e_shoff + i * eh.e_shentsize;
    Elf64_Shdr sh;
    std::memcpy(&sh, elf.data() + at, sizeof sh);
    if (std::strcmp(elf.data() + names.sh_offset + sh.sh_name, "shardline_abi") == 0) return {at, sh};
  }
  FAIL("no shardline_abi section");
  return {};
}

template <class T>
void poke(std::string& image, std::size_t offset, T value) {
  std::memcpy(image.data() + offset, &value, sizeof value);
}

// test_events' types, as the plugin defines them.
struct Event {
  std::uint64_t key;
  std::uint64_t seq;
};
struct LastSeq {
  std::uint64_t last = 0;
  std::uint64_t count = 0;
};
struct Tracked {
  std::uint64_t key, seq, count;
  bool in_order;
};

}  // namespace

TEST_CASE("test_events.so loads and its manifest lists every component with its types", "[loader]") {
  const auto plugin = Plugin::load(test_plugin("test_events"));
  CHECK(plugin->name() == "test_events");
  CHECK(plugin->version() == "1.0.0");
  CHECK(plugin->file() == test_plugin("test_events"));
  CHECK(plugin->manifest().error.empty());

  struct Expected {
    ComponentKind kind;
    std::string name, input, output, state;
  };
  const std::vector<Expected> expected = {
      {ComponentKind::decoder, "event_line", "", "Event", ""},
      {ComponentKind::partition, "by_key", "Event", "", ""},
      {ComponentKind::state, "last_seq", "", "", "LastSeq"},
      {ComponentKind::state_computation, "track", "Event", "Tracked", "LastSeq"},
      {ComponentKind::partition, "tracked_by_key", "Tracked", "", ""},
      {ComponentKind::state_computation, "retrack", "Tracked", "Tracked", "LastSeq"},
      {ComponentKind::encoder, "tracked_line", "Tracked", "", ""},
      {ComponentKind::computation, "explode", "Event", "Event", ""},
      {ComponentKind::computation, "segfault", "Event", "Event", ""},
      {ComponentKind::computation, "exit_at_5", "Event", "Event", ""},
      {ComponentKind::computation, "overflow", "Event", "Event", ""},
      {ComponentKind::computation, "overflow_tracked", "Tracked", "Tracked", ""},
      {ComponentKind::computation, "slow_tracked", "Tracked", "Tracked", ""},
      {ComponentKind::computation, "to_text", "Event", "std::string", ""},
      {ComponentKind::encoder, "text", "std::string", "", ""},
      {ComponentKind::computation, "no_13", "std::string", "std::string", ""},
      {ComponentKind::state, "labeller", "", "", "Labeller"},
      {ComponentKind::state_computation, "label", "Event", "std::string", "Labeller"},
      {ComponentKind::state, "picky", "", "", "LastSeq"},
      {ComponentKind::partition, "by_text", "std::string", "", ""},
      {ComponentKind::partition, "by_key_but_13", "Event", "", ""},
  };
  const auto& components = plugin->manifest().components;
  REQUIRE(components.size() == expected.size());
  const auto name_of = [](const shardline::TypeDesc* t) { return t ? std::string(t->name) : ""; };
  for (std::size_t i = 0; i < expected.size(); ++i) {
    INFO("component " << i << ": " << expected[i].name);
    CHECK(components[i].kind == expected[i].kind);
    CHECK(components[i].name == expected[i].name);
    CHECK(name_of(components[i].input) == expected[i].input);
    CHECK(name_of(components[i].output) == expected[i].output);
    CHECK(name_of(components[i].state) == expected[i].state);
    CHECK(components[i].impl != nullptr);
    CHECK(plugin->find(expected[i].kind, expected[i].name) == &components[i]);
  }
  CHECK(plugin->find(ComponentKind::partition, "by_key")->key_kind == shardline::KeyKind::integer);
  CHECK(plugin->find(ComponentKind::partition, "by_text")->key_kind == shardline::KeyKind::string);
  CHECK(plugin->find(ComponentKind::state, "last_seq")->state->size == 16);
  CHECK(plugin->find(ComponentKind::state, "last_seq")->state->trivial);
  CHECK_FALSE(plugin->find(ComponentKind::computation, "to_text")->output->trivial);

  // Lookup is by kind and name.
  CHECK(plugin->find(ComponentKind::decoder, "track") == nullptr);
  CHECK(plugin->find(ComponentKind::decoder, "nope") == nullptr);
  CHECK(plugin->names_of(ComponentKind::decoder) == "event_line");
  CHECK(plugin->names_of(ComponentKind::computation) ==
        "explode, segfault, exit_at_5, overflow, overflow_tracked, slow_tracked, to_text, "
        "no_13");
  CHECK(plugin->names_of(ComponentKind::encoder) == "tracked_line, text");
  CHECK(plugin->names_of(ComponentKind::state) == "last_seq, labeller, picky");
  CHECK(plugin->names_of(ComponentKind::partition) == "by_key, tracked_by_key, by_text, by_key_but_13");
  CHECK(plugin->names_of(ComponentKind::state_computation) == "track, retrack, label");
}

TEST_CASE("a loaded plugin's decoder runs in the host", "[loader]") {
  const auto plugin = Plugin::load(test_plugin("test_events"));
  const auto* info = plugin->find(ComponentKind::decoder, "event_line");
  REQUIRE(info);
  const std::string lines[] = {"5 7", "nonsense", "18446744073709551615 0"};
  std::vector<shardline::Frame> frames;
  for (const auto& l : lines)
    frames.push_back({reinterpret_cast<const std::byte*>(l.data()), static_cast<std::uint32_t>(l.size())});
  ErrorLog errors;
  {
    shardline::engine::MessageBuffer out(info->output);
    static_cast<shardline::Decoder*>(info->impl.get())->decode(frames.data(), frames.size(), out, errors.sink);
    REQUIRE(out.count() == 2);
    CHECK(out.span().at<Event>(0).key == 5);
    CHECK(out.span().at<Event>(0).seq == 7);
    CHECK(out.span().at<Event>(1).key == UINT64_MAX);
    CHECK(out.span().at<Event>(1).seq == 0);
  }
  REQUIRE(errors.entries.size() == 1);
  CHECK(errors.entries[0].first == 1);
  CHECK(errors.entries[0].second == "expected \"KEY SEQ\" (two unsigned integers), got \"nonsense\"");
}

TEST_CASE("test_events' components behave as the integration tests expect", "[loader]") {
  using shardline::engine::MessageBuffer;
  const auto plugin = Plugin::load(test_plugin("test_events"));
  const auto component = [&](ComponentKind kind, std::string_view name) {
    const auto* c = plugin->find(kind, name);
    REQUIRE(c);
    return c;
  };
  ErrorLog errors;
  MessageBuffer events(component(ComponentKind::decoder, "event_line")->output);
  for (const Event e : {Event{5, 1}, Event{5, 3}, Event{6, 14}, Event{5, 2}, Event{13, 4}}) push(events, e);

  SECTION("by_key, track and tracked_line") {
    std::uint64_t keys[5];
    static_cast<shardline::Partition*>(component(ComponentKind::partition, "by_key")->impl.get())
        ->keys(events.span(), keys, errors.sink);
    CHECK(std::vector<std::uint64_t>(keys, keys + 5) == std::vector<std::uint64_t>{5, 5, 6, 5, 13});
    LastSeq five, six, thirteen;
    void* const states[] = {&five, &five, &six, &five, &thirteen};
    const auto* track = component(ComponentKind::state_computation, "track");
    MessageBuffer tracked(track->output);
    static_cast<shardline::StateComputation*>(track->impl.get())->run(events.span(), states, tracked, errors.sink);
    REQUIRE(tracked.count() == 5);
    CHECK(five.count == 3);
    CHECK(five.last == 2);
    CHECK(tracked.span().at<Tracked>(1).count == 2);
    CHECK(tracked.span().at<Tracked>(1).in_order);
    CHECK_FALSE(tracked.span().at<Tracked>(3).in_order);
    std::vector<std::byte> bytes;
    {
      shardline::EncodedOutput out(bytes, shardline::Framing::lines);
      static_cast<shardline::Encoder*>(component(ComponentKind::encoder, "tracked_line")->impl.get())
          ->encode(tracked.span(), out, errors.sink);
    }
    CHECK(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()) ==
          "5 1 1 ok\n5 3 2 ok\n6 14 1 ok\n5 2 3 OUT-OF-ORDER\n13 4 1 ok\n");
    CHECK(errors.entries.empty());
  }
  SECTION("explode fails on multiples of 7") {
    const auto* explode = component(ComponentKind::computation, "explode");
    MessageBuffer out(explode->output);
    static_cast<shardline::Computation*>(explode->impl.get())->run(events.span(), out, errors.sink);
    CHECK(out.count() == 4);
    CHECK(errors.entries == Reports{{2, "seq 14 is cursed"}});
  }
  SECTION("to_text, text and by_text") {
    const auto* to_text = component(ComponentKind::computation, "to_text");
    MessageBuffer texts(to_text->output);
    static_cast<shardline::Computation*>(to_text->impl.get())->run(events.span(), texts, errors.sink);
    REQUIRE(texts.count() == 5);
    CHECK(texts.span().at<std::string>(2) == "6:14");
    std::uint64_t keys[5];
    static_cast<shardline::Partition*>(component(ComponentKind::partition, "by_text")->impl.get())
        ->keys(texts.span(), keys, errors.sink);
    CHECK(keys[0] == shardline::key_of("5:1"));
    std::vector<std::byte> bytes;
    {
      shardline::EncodedOutput out(bytes, shardline::Framing::lines);
      static_cast<shardline::Encoder*>(component(ComponentKind::encoder, "text")->impl.get())
          ->encode(texts.span(), out, errors.sink);
    }
    CHECK(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()) == "5:1\n5:3\n6:14\n5:2\n13:4\n");
    CHECK(errors.entries.empty());
  }
  SECTION("picky refuses key 13; last_seq builds empty states") {
    alignas(LastSeq) std::byte slot[sizeof(LastSeq)];
    auto* picky = static_cast<shardline::StateFactory*>(component(ComponentKind::state, "picky")->impl.get());
    CHECK_THROWS_WITH(picky->construct(slot, 13), "no state for key 13");
    picky->construct(slot, 12);
    CHECK(reinterpret_cast<LastSeq*>(slot)->count == 0);
    static_cast<shardline::StateFactory*>(component(ComponentKind::state, "last_seq")->impl.get())->construct(slot, 1);
    CHECK(reinterpret_cast<LastSeq*>(slot)->last == 0);
  }
}

TEST_CASE("a missing plugin file is reported as missing, a folder as a folder", "[loader]") {
  TempDir dir;
  const auto missing = dir.path / "missing.so";
  CHECK(load_error(missing) == missing.string() + ": no such plugin file");
  // A folder, or a FIFO, is there, but is not a plugin file: said as such, not as missing.
  CHECK(load_error(dir.path) == dir.path.string() + ": is a folder, not a plugin file (name the .so in it)");
  const auto fifo = dir.path / "fifo.so";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK(load_error(fifo) == fifo.string() + ": is not a regular file (a FIFO, a socket or a device), "
                            "so not a plugin file");
}

TEST_CASE("a file that is not ELF is refused before dlopen", "[loader]") {
  TempDir dir;
  const auto file = dir.file("not_elf.so", "this is not a shared library\n");
  CHECK(load_error(file) ==
        file.string() + ": not an ELF file (no ELF magic number): is this really a compiled plugin?");
  const auto empty = dir.file("empty.so", "");
  CHECK(load_error(empty) ==
        empty.string() + ": not an ELF file (no ELF magic number): is this really a compiled plugin?");
}

TEST_CASE("a truncated plugin is refused before dlopen", "[loader]") {
  TempDir dir;
  const std::string whole = read_file(test_plugin("test_events"));
  REQUIRE(whole.size() > 4096);
  const auto before = mapped_shadow_copies();

  SECTION("the first half of a plugin") {
    const auto half = dir.file("half.so", whole.substr(0, whole.size() / 2));
    const std::string msg = load_error(half);
    CHECK_THAT(msg, Catch::Matchers::StartsWith(half.string() + ": truncated ELF file: "));
    CHECK_THAT(msg, Catch::Matchers::EndsWith(" but the file has " + std::to_string(whole.size() / 2) +
                                              " (is the build still writing it?)"));
  }
  SECTION("everything but the section header table") {
    // The section header table is the last thing the linker writes.
    const auto most = dir.file("most.so", whole.substr(0, whole.size() - 64));
    const std::string msg = load_error(most);
    CHECK_THAT(msg, Catch::Matchers::StartsWith(most.string() + ": truncated ELF file: section headers end at byte " +
                                                std::to_string(whole.size()) + " but the file has " +
                                                std::to_string(whole.size() - 64)));
    CHECK_THAT(msg, Catch::Matchers::EndsWith(" (is the build still writing it?)"));
  }
  SECTION("shorter than an ELF header") {
    const auto tiny = dir.file("tiny.so", whole.substr(0, 40));
    CHECK(load_error(tiny) ==
          tiny.string() + ": truncated ELF file: 40 bytes, shorter than an ELF header");
  }
  // Nothing was mapped for any of them.
  CHECK(mapped_shadow_copies() == before);
}

TEST_CASE("an ELF file that is not a shared object for this machine is refused", "[loader]") {
  TempDir dir;
  const std::string original = read_file(test_plugin("test_events"));
  SECTION("a relocatable object") {
    std::string image = original;
    poke<Elf64_Half>(image, offsetof(Elf64_Ehdr, e_type), ET_REL);
    const auto file = dir.file("object.so", image);
    CHECK(load_error(file) ==
          file.string() + ": ELF file is not a shared object (build it with shardline_add_plugin())");
  }
  SECTION("another machine") {
    std::string image = original;
    poke<Elf64_Half>(image, offsetof(Elf64_Ehdr, e_machine), EM_AARCH64);
    const auto file = dir.file("arm.so", image);
    CHECK(load_error(file) == file.string() + ": ELF file for another machine (need 64-bit x86-64)");
  }
  SECTION("32-bit") {
    std::string image = original;
    image[EI_CLASS] = ELFCLASS32;
    const auto file = dir.file("elf32.so", image);
    CHECK(load_error(file) == file.string() + ": ELF file for another machine (need 64-bit x86-64)");
  }
}

TEST_CASE("an ELF file whose header entry sizes are wrong is refused, not read past", "[loader]") {
  // A section header entry size of 0 would have every entry read at the table's offset, 64
  // bytes of it past the end of a file whose table "ends" there (caught by ASan before).
  TempDir dir;
  const std::string original = read_file(test_plugin("test_events"));
  for (const auto& [field, size] : {std::pair{offsetof(Elf64_Ehdr, e_shentsize), 0},
                                   std::pair{offsetof(Elf64_Ehdr, e_phentsize), 8}}) {
    std::string image = original;
    poke<Elf64_Half>(image, field, static_cast<Elf64_Half>(size));
    if (size == 0) poke<Elf64_Off>(image, offsetof(Elf64_Ehdr, e_shoff), image.size());
    const auto file = dir.file("damaged.so", image);
    CHECK_THAT(load_error(file),
               Catch::Matchers::StartsWith(file.string() + ": malformed ELF file: program or "
                                                           "section header entries of "));
  }
}

TEST_CASE("an ABI record of another SDK is refused before dlopen", "[loader]") {
  TempDir dir;
  const auto before = mapped_shadow_copies();
  std::string image = read_file(test_plugin("test_events"));
  const auto [header_at, section] = abi_section(image);
  REQUIRE(section.sh_size == sizeof(shardline::AbiRecord));
  SECTION("a record of another size") {
    poke<Elf64_Xword>(image, header_at + offsetof(Elf64_Shdr, sh_size), 40);
    const auto file = dir.file("old_sdk.so", image);
    CHECK(load_error(file) == file.string() +
                                  ": the shardline_abi record is 40 bytes, not a record of this SDK (" +
                                  std::to_string(sizeof(shardline::AbiRecord)) +
                                  " bytes): rebuild the plugin against this SDK");
  }
  SECTION("a record without the magic number") {
    image[section.sh_offset] = 'X';
    const auto file = dir.file("bad_magic.so", image);
    CHECK(load_error(file) == file.string() +
                                  ": the shardline_abi record does not start with the Shardline "
                                  "magic number: rebuild the plugin against this SDK");
  }
  SECTION("another compiler") {
    shardline::AbiRecord record;
    std::memcpy(&record, image.data() + section.sh_offset, sizeof record);
    CHECK(std::memcmp(&record, &shardline::kAbiRecord, sizeof record) == 0);  // as built
    record.compiler_major = 11;
    record.compiler_minor = 4;
    poke(image, section.sh_offset, record);
    const auto file = dir.file("gcc11.so", image);
    const std::string msg = load_error(file);
    CHECK(msg == file.string() + ": ABI mismatch: the plugin was built for " +
                     shardline::loader::describe(record) + ", but this host runs " +
                     shardline::loader::describe(shardline::kAbiRecord) +
                     "; rebuild the plugin against this host's SDK");
    CHECK_THAT(msg, Catch::Matchers::Contains("built for SDK ABI " + std::to_string(shardline::kSdkAbiVersion) + " (SDK " SHARDLINE_SDK_VERSION ", g++ 11.4, "));
  }
  SECTION("the old string ABI: the flag that chose it is named") {
    shardline::AbiRecord record;
    std::memcpy(&record, image.data() + section.sh_offset, sizeof record);
    record.cxx11_abi = 0;
    poke(image, section.sh_offset, record);
    const auto file = dir.file("old_strings.so", image);
    const std::string msg = load_error(file);
    CHECK_THAT(msg, Catch::Matchers::Contains(", old string ABI, "));
    CHECK_THAT(msg, Catch::Matchers::EndsWith(
                        "; rebuild the plugin against this host's SDK, without "
                        "-D_GLIBCXX_USE_CXX11_ABI=0 in its compiler flags"));
  }
  CHECK(mapped_shadow_copies() == before);
}

TEST_CASE("a plugin of the same ABI built with another SDK release loads, and says which",
          "[loader]") {
  TempDir dir;
  const auto current = Plugin::load(test_plugin("test_events"));
  CHECK(current->sdk_version() == SHARDLINE_SDK_VERSION);
  CHECK(current->built_with_sdk(0, 2, 4));
  CHECK_FALSE(current->built_with_sdk(99, 0, 0));

  const auto file = shardline_test::with_sdk_version(dir, "older.so", test_plugin("test_events"),
                                                     "0.2.3");
  REQUIRE_FALSE(file.empty());
  const auto older = Plugin::load(file);
  CHECK(older->sdk_version() == "0.2.3");
  CHECK(older->built_with_sdk(0, 2, 3));
  CHECK(older->built_with_sdk(0, 1, 9));
  CHECK_FALSE(older->built_with_sdk(0, 2, 4));
  CHECK_FALSE(older->built_with_sdk(0, 3, 0));
  // Compared as numbers, not as text.
  const auto later = Plugin::load(shardline_test::with_sdk_version(
      dir, "later.so", test_plugin("test_events"), "0.10.0"));
  CHECK(later->built_with_sdk(0, 2, 4));
  CHECK_FALSE(later->built_with_sdk(1, 0, 0));
  // A pre-release comes before its release; a version without a patch (or without anything)
  // counts the missing parts as 0.
  const auto version = [&](const std::string& v) {
    return Plugin::load(shardline_test::with_sdk_version(dir, "sdk-" + v + ".so",
                                                         test_plugin("test_events"), v));
  };
  CHECK_FALSE(version("0.2.4-rc1")->built_with_sdk(0, 2, 4));
  CHECK(version("0.2.4-rc1")->built_with_sdk(0, 2, 3));
  CHECK(version("0.3")->built_with_sdk(0, 2, 4));
  CHECK_FALSE(version("0.2")->built_with_sdk(0, 2, 4));
  CHECK_FALSE(version("")->built_with_sdk(0, 0, 1));
}

TEST_CASE("a shared library without an ABI record is not a Shardline plugin", "[loader]") {
  const auto file = test_plugin("no_abi");
  CHECK(load_error(file) == file.string() +
                                ": not a Shardline plugin: it has no shardline_abi record (define it "
                                "with SHARDLINE_PLUGIN and build it with shardline_add_plugin())");
}

TEST_CASE("a plugin with STB_GNU_UNIQUE symbols is refused before it is loaded", "[loader]") {
  // Such a library stays mapped after dlclose, and the next build would share its unique
  // objects: a reload between two such builds once kept the old build's type descriptions and
  // ran the new code on wrong state layouts, silently.
  const auto before = mapped_shadow_copies();
  const auto file = test_plugin("gnu_unique");
  const std::string msg = load_error(file);
  CHECK_THAT(msg, Catch::Matchers::StartsWith(file.string() + ": has "));
  CHECK_THAT(msg, Catch::Matchers::Contains(" STB_GNU_UNIQUE symbol(s) (e.g. "));
  CHECK_THAT(msg, Catch::Matchers::EndsWith(
                      "), so it could never be unloaded and a hot reload would mix two builds' "
                      "data: build it with shardline_add_plugin(), or compile it with "
                      "-fno-gnu-unique and -fvisibility=hidden"));
  CHECK(mapped_shadow_copies() == before);
  // Built the same way with -fno-gnu-unique (shardline_add_plugin), it loads.
  CHECK(shardline::loader::Plugin::load(test_plugin("test_extra")) != nullptr);
}

TEST_CASE("an ABI mismatch names both sides", "[loader]") {
  using shardline::kAbiRecord;
  using shardline::loader::describe;
  const auto before = mapped_shadow_copies();
  const auto file = test_plugin("wrong_abi");
  shardline::AbiRecord plugin_side = kAbiRecord;
  plugin_side.sdk_abi = 999;
  const std::string msg = load_error(file);
  CHECK(msg == file.string() + ": ABI mismatch: the plugin was built for " + describe(plugin_side) +
                   ", but this host runs " + describe(kAbiRecord) +
                   "; rebuild the plugin against this host's SDK");
  // Both sides spelled out.
  const std::string spdlog = std::to_string(SPDLOG_VER_MAJOR) + "." + std::to_string(SPDLOG_VER_MINOR) +
                             "." + std::to_string(SPDLOG_VER_PATCH);
  const std::string rest = " (SDK " SHARDLINE_SDK_VERSION ", g++ " + std::to_string(__GNUC__) + "." +
                           std::to_string(__GNUC_MINOR__) + ", C++11 string ABI, spdlog " + spdlog + ")";
  CHECK(describe(kAbiRecord) == "SDK ABI " + std::to_string(shardline::kSdkAbiVersion) + rest);
  CHECK_THAT(msg, Catch::Matchers::Contains("built for SDK ABI 999" + rest));
  CHECK_THAT(msg, Catch::Matchers::Contains("this host runs SDK ABI " + std::to_string(shardline::kSdkAbiVersion) + rest));
  // Refused before dlopen: no copy was mapped.
  CHECK(mapped_shadow_copies() == before);
}

TEST_CASE("a plugin without the manifest entry point is refused and unloaded", "[loader]") {
  const auto before = mapped_shadow_copies();
  const auto file = test_plugin("no_entry");
  CHECK(load_error(file) == file.string() +
                                ": not a Shardline plugin: no shardline_plugin_manifest entry point "
                                "(define the plugin with SHARDLINE_PLUGIN)");
  CHECK(mapped_shadow_copies() == before);
}

TEST_CASE("an undefined symbol fails the load, with dlerror's explanation", "[loader]") {
  const auto before = mapped_shadow_copies();
  const auto file = test_plugin("undefined_symbol");
  const std::string msg = load_error(file);
  // dlerror's text names the shadow copy that was dlopen-ed; the loader puts the user's file
  // in its place, passes on nothing but dlerror's explanation, demangles the symbol, and says
  // what to do.
  CHECK(msg == file.string() + ": failed to load: " + file.string() +
                   ": undefined symbol: shardline_test_missing_function(unsigned long) "
                   "(_Z31shardline_test_missing_functionm): the plugin uses it, but neither the "
                   "plugin nor a library it links defines it; define it, or link the library "
                   "that does (shardline_add_plugin(... LIBRARIES ...), whose -Wl,-z,defs makes "
                   "this an error of the plugin's build)");
  CHECK_THAT(msg, Catch::Matchers::Contains("undefined symbol: shardline_test_missing_function"));
  CHECK(mapped_shadow_copies() == before);
  // The shadow copy is gone, and its folder with it once empty.
  const auto shadows = fs::temp_directory_path() / ("shardline-" + std::to_string(::getpid()));
  if (fs::exists(shadows))
    for (const auto& entry : fs::directory_iterator(shadows))
      CHECK_THAT(entry.path().filename().string(), !Catch::Matchers::StartsWith("undefined_symbol."));
}

TEST_CASE("a plugin built with AddressSanitizer loads only into a host that has it", "[loader]") {
  const auto before = mapped_shadow_copies();
  const auto file = test_plugin("asan_built");
  const auto needed = shardline::loader::ElfFile(file).needed();
  CHECK(std::count(needed.begin(), needed.end(), "libasan.so.8") == 1);
  CHECK(std::count(needed.begin(), needed.end(), "libstdc++.so.6") == 1);
#ifdef __SANITIZE_ADDRESS__
  // These tests run under AddressSanitizer (the asan preset): the plugin loads like any other.
  CHECK(load_error(file) == "<loaded>");
#else
  // Without the check, dlopen would not fail: ASan's runtime would end this process.
  CHECK(load_error(file) ==
        file.string() + ": built with AddressSanitizer (it needs libasan.so.8), but this host is "
                        "not, and loading it would end the process: run it in a host built with "
                        "the same sanitizer (in Shardline's source tree, `cmake --preset asan && "
                        "cmake --build build-asan` builds build-asan/shardline), or rebuild "
                        "it without -fsanitize=address");
  CHECK(mapped_shadow_copies() == before);
#endif
}

TEST_CASE("a registration error in the plugin refuses it", "[loader]") {
  const auto before = mapped_shadow_copies();
  const auto file = test_plugin("duplicate");
  CHECK(load_error(file) ==
        file.string() + ": plugin 'duplicate' failed to register its components: duplicate decoder 'same'");
  CHECK(mapped_shadow_copies() == before);
}

TEST_CASE("loading the same file twice gives two independent libraries", "[loader]") {
  const auto before = mapped_shadow_copies();
  const auto a = Plugin::load(test_plugin("test_events"));
  const auto after_a = mapped_shadow_copies();
  const auto b = Plugin::load(test_plugin("test_events"));
  const auto after_b = mapped_shadow_copies();

  CHECK(a != b);
  CHECK(&a->manifest() != &b->manifest());
  const auto* da = a->find(ComponentKind::decoder, "event_line");
  const auto* db = b->find(ComponentKind::decoder, "event_line");
  REQUIRE(da);
  REQUIRE(db);
  CHECK(da->impl.get() != db->impl.get());
  CHECK(da->output != db->output);  // each copy has its own TypeDesc constants...
  CHECK(da->output->name == db->output->name);  // ...describing the same type

  // Each load mapped its own shadow copy (from the shardline-<pid> folder), already unlinked.
  const auto new_a = names_in(after_a, before);
  const auto new_b = names_in(after_b, after_a);
  REQUIRE(new_a.size() == 1);
  REQUIRE(new_b.size() == 1);
  CHECK(new_a[0] != new_b[0]);
  CHECK_THAT(new_a[0], Catch::Matchers::EndsWith(".so"));
  CHECK_THAT(fs::path(new_a[0]).filename().string(), Catch::Matchers::StartsWith("test_events."));
  CHECK_FALSE(fs::exists(new_a[0]));
  CHECK_FALSE(fs::exists(new_b[0]));
}

TEST_CASE("a plugin's library is unmapped when the last reference goes", "[loader]") {
  const auto before = mapped_shadow_copies();
  auto plugin = Plugin::load(test_plugin("test_events"));
  const auto loaded = names_in(mapped_shadow_copies(), before);
  REQUIRE(loaded.size() == 1);

  auto second_ref = plugin;
  plugin.reset();
  CHECK(mapped_shadow_copies().count(loaded[0]) == 1);  // still held by second_ref
  CHECK(second_ref->name() == "test_events");

  second_ref.reset();
  CHECK(mapped_shadow_copies().count(loaded[0]) == 0);
  CHECK(mapped_shadow_copies() == before);
}

TEST_CASE("a plugin knows whether its file now holds another build", "[loader]") {
  TempDir dir;
  const auto file = dir.path / "ev.so";
  fs::copy_file(test_plugin("test_events"), file);
  const auto plugin = Plugin::load(file);
  CHECK_FALSE(plugin->rebuilt());
  // Another build renamed over it, as a build system does.
  fs::copy_file(test_plugin("test_events_v2"), dir.path / "ev.so.tmp");
  fs::rename(dir.path / "ev.so.tmp", file);
  CHECK(plugin->rebuilt());
  // The same bytes as the build running, in a new file: not a rebuild.
  fs::copy_file(test_plugin("test_events"), file, fs::copy_options::overwrite_existing);
  CHECK_FALSE(plugin->rebuilt());
  // Gone: nothing to load.
  fs::remove(file);
  CHECK_FALSE(plugin->rebuilt());
}
