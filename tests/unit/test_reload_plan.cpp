// plan_state: how a state's values cross a reload, from the two versions' type descriptions.
#include <catch2/catch.hpp>
#include <cstddef>
#include <string>
#include <vector>

#include "reload/reload_plan.hpp"

using shardline::TypeDesc;
using shardline::reload::Carry;
using shardline::reload::plan_state;

namespace {
void save(const void*, std::vector<std::byte>&) {}
void restore(void*, const std::byte*, std::size_t, std::uint32_t) {}

TypeDesc desc(bool trivial, std::uint64_t fingerprint, bool can_save) {
  TypeDesc t{};
  t.name = "S";
  t.size = 16;
  t.align = 8;
  t.trivial = trivial;
  t.fingerprint = fingerprint;
  t.save = can_save ? save : nullptr;
  t.restore = can_save ? restore : nullptr;
  return t;
}
}  // namespace

TEST_CASE("a trivially copyable state with the same layout is kept as is", "[reload]") {
  const auto c = plan_state(desc(true, 1, true), desc(true, 1, true), false);
  REQUIRE(c.carry == Carry::keep);
  REQUIRE(c.why == "S has the same layout (schema 0): kept as is");
}

TEST_CASE("a state that is not trivially copyable is rebuilt by the new code when it can be",
          "[reload]") {
  // It may hold a std::function or a shared_ptr made by the old code, which would outlive it.
  const auto c = plan_state(desc(false, 1, true), desc(false, 1, true), false);
  REQUIRE(c.carry == Carry::migrate);
  REQUIRE(c.why.find("not trivially copyable") != std::string::npos);
}

TEST_CASE("a state that is not trivially copyable and cannot be saved is kept, its build loaded",
          "[reload]") {
  const auto c = plan_state(desc(false, 1, false), desc(false, 1, false), false);
  REQUIRE(c.carry == Carry::keep);
  REQUIRE_FALSE(c.warn);
  REQUIRE(c.why.find("the old build stays loaded for it") != std::string::npos);
  REQUIRE(c.why.find("give it save() and restore()") != std::string::npos);
}

TEST_CASE("a changed layout migrates, resets or is refused", "[reload]") {
  REQUIRE(plan_state(desc(true, 1, true), desc(true, 2, true), false).carry == Carry::migrate);
  REQUIRE(plan_state(desc(true, 1, false), desc(true, 2, true), true).carry == Carry::reset);
  const auto c = plan_state(desc(true, 1, false), desc(true, 2, true), false);
  REQUIRE(c.carry == Carry::blocked);
  REQUIRE(c.why.find("the running version has no save()") != std::string::npos);
}

TEST_CASE("a layout change without a new schema_version migrates, with a warning", "[reload]") {
  TypeDesc from = desc(true, 1, true), to = desc(true, 2, true);
  from.schema_version = to.schema_version = 2;
  to.size = 24;
  const auto same = plan_state(from, to, false);
  REQUIRE(same.carry == Carry::migrate);
  CHECK(same.warn);
  CHECK(same.why == "S (schema 2) changed layout (16 -> 24 bytes) without a new schema_version: "
                    "every value saved and restored, but restore() is told schema 2 for the old "
                    "form too; bump schema_version when the layout (or what save() writes) "
                    "changes");
  to.schema_version = 3;
  const auto bumped = plan_state(from, to, false);
  REQUIRE(bumped.carry == Carry::migrate);
  CHECK_FALSE(bumped.warn);
}

TEST_CASE("a schema that goes back migrates, with a warning", "[reload]") {
  TypeDesc from = desc(true, 1, true), to = desc(true, 2, true);
  from.schema_version = 2;
  to.schema_version = 1;
  const auto c = plan_state(from, to, false);
  REQUIRE(c.carry == Carry::migrate);
  CHECK(c.warn);
  CHECK(c.why.find("the schema goes back: the new restore() is given values saved in schema 2, "
                   "newer than its own") != std::string::npos);
}

TEST_CASE("a reset is announced, and a vtable is not advised to keep its layout", "[reload]") {
  const auto reset = plan_state(desc(true, 1, false), desc(true, 2, true), true);
  REQUIRE(reset.carry == Carry::reset);
  CHECK(reset.warn);
  CHECK(reset.why.find("every key starts again from a new state") != std::string::npos);
  TypeDesc virtual_from = desc(false, 1, false), virtual_to = desc(false, 1, false);
  virtual_from.polymorphic = virtual_to.polymorphic = true;
  const auto blocked = plan_state(virtual_from, virtual_to, false);
  REQUIRE(blocked.carry == Carry::blocked);
  CHECK(blocked.why == "S has a vtable, so its objects cannot outlive the old code, and the "
                       "running version has no save(): nothing can carry its values over (a "
                       "type with a vtable is never kept as it is); allow on_reload = \"reset\" "
                       "for this state (a topology change, applied at the next start), and give "
                       "the state type save() and restore() so that later reloads migrate it");
}

TEST_CASE("a layout change the running build cannot save says the way through two builds",
          "[reload]") {
  // The new build has save() and restore() already: what is missing is the running build's
  // save(), which only a build that keeps the old layout can bring.
  const auto c = plan_state(desc(true, 1, false), desc(true, 2, true), false);
  REQUIRE(c.carry == Carry::blocked);
  CHECK(c.why == "S (schema 0, 16 bytes) changed to S (schema 0, 16 bytes), and the running "
                 "version has no save(): the running build cannot save its states; first "
                 "publish a build that keeps the old layout and adds save() and restore() (its "
                 "states are kept as they are), then one with the new layout (they are "
                 "migrated); or allow on_reload = \"reset\" for this state (a topology change, "
                 "applied at the next start)");
  // That middle build is kept as it is, and the one after it migrated: the way works.
  CHECK(plan_state(desc(true, 1, false), desc(true, 1, true), false).carry == Carry::keep);
  CHECK(plan_state(desc(true, 1, true), desc(true, 2, true), false).carry == Carry::migrate);
  // The running build can save, the new one cannot restore: the new build is what to change.
  TypeDesc no_restore = desc(true, 2, true);
  no_restore.restore = nullptr;
  const auto n = plan_state(desc(true, 1, true), no_restore, false);
  REQUIRE(n.carry == Carry::blocked);
  CHECK(n.why.find("and the new version has no restore(); give the new build's state type "
                   "restore() (and save(), for the reloads after it), keep its layout, or allow "
                   "on_reload = \"reset\"") != std::string::npos);
}

TEST_CASE("a state with a vtable and save()/restore() is migrated without a layout warning",
          "[reload]") {
  TypeDesc from = desc(false, 1, true), to = desc(false, 1, true);
  from.polymorphic = to.polymorphic = true;
  const auto c = plan_state(from, to, false);
  REQUIRE(c.carry == Carry::migrate);
  CHECK_FALSE(c.warn);  // nothing changed: no advice to bump schema_version
  CHECK(c.why == "S (schema 0) has virtual functions: every value saved by the old code and "
                 "restored by the new, so none points into the old build");
}
