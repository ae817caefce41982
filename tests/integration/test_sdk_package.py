"""The plugin author's first job, from outside this tree: install Shardline, then build the
README's hello-world plugin in a project of its own with find_package(shardline) and
shardline_add_plugin(), and run it with the installed shardline binary."""
import os
import re
import subprocess
import unittest

from harness import BUILD, DATA, ROOT, TempDirTest, read, summary


class SdkPackage(TempDirTest):
    def test_readme_plugin_builds_against_the_installed_package(self):
        prefix = self.path("prefix")
        subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix], check=True,
                       capture_output=True, timeout=300)
        code = re.search(r"```cpp\n(// hello\.cpp.*?)```", read(os.path.join(ROOT, "README.md")),
                         re.S).group(1)
        project = self.path("hello")
        os.makedirs(project)
        with open(os.path.join(project, "hello.cpp"), "w") as f:
            f.write(code)
        with open(os.path.join(project, "CMakeLists.txt"), "w") as f:
            f.write("cmake_minimum_required(VERSION 3.25)\nproject(hello CXX)\n"
                    "find_package(shardline REQUIRED)\n"
                    "shardline_add_plugin(hello SOURCES hello.cpp)\n")
        for cmd in (["cmake", "-S", project, "-B", self.path("build"), f"-DCMAKE_PREFIX_PATH={prefix}"],
                    ["cmake", "--build", self.path("build")]):
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        topology = self.write("topology.toml", f"""
shards = 2
[plugins]
hello = "build/hello.so"
[states.counts]
factory = "hello.count"
[[pipelines]]
name = "words"
source = {{ kind = "file", path = "{DATA}/word-count/bill_of_rights.txt", framing = "lines", decoder = "hello.line" }}
steps = [ {{ computation = "hello.split" }},
          {{ state_computation = "hello.add", state = "counts", partition = "hello.word" }} ]
sink = {{ kind = "stdout", encoder = "hello.text" }}
""")
        p = subprocess.run([os.path.join(prefix, "bin", "shardline"), "run", topology],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        self.assertIn("congress 1", lines)
        self.assertEqual(summary(p.stderr)["words"]["out"], len(lines))

    def test_unusual_but_valid_shapes_compile(self):
        # Each SDK check must refuse only what the engine cannot run.
        lines = [
            # Built as S{}: an aggregate with a const member is not default-constructible.
            "p.state<Tally>(\"t\");",
            "p.state_computation(\"f\", [](const In& m, Tally& t) { t.n += m.v; });",
            "p.computation(\"c\", [](const In& m, shardline::Emit<In>& e) { e(m); e(m); });",
        ]
        source = self.write("good.cpp", "#include <shardline/plugin.hpp>\n#include <cstdint>\n"
                            "struct In { int v = 0; };\n"
                            "struct Tally { const int version; std::uint64_t n; };\n"
                            "SHARDLINE_PLUGIN(\"good\", \"1.0.0\", p) {\n  " + "\n  ".join(lines) +
                            "\n}\n")
        p = subprocess.run(["g++", "-std=c++20", "-fsyntax-only", "-Wall", "-Wextra",
                            "-I", os.path.join(ROOT, "sdk", "include"), source],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_a_wrong_signature_is_explained_at_compile_time(self):
        # The error a plugin author sees names the accepted signatures (a static_assert in the
        # SDK), and is the only one: not a page of template instantiations, nor a second
        # static_assert blaming something the function does not do.
        cases = {
            "p.state_computation(\"f\", [](const In& m, S s) { s.n += m.v; });":
                "a state computation takes its state by non-const reference (S&): a copy would "
                "lose every change to it",
            "p.state_computation(\"f\", [](const In& m, S& s, int extra) { s.n += m.v + extra; });":
                "a state computation takes (const In&, S&) and returns nothing, Out or "
                "std::optional<Out>",
            # The state first: the const message would otherwise be blamed as a const state.
            "p.state_computation(\"f\", [](S& s, const In& m) { s.n += m.v; });":
                "a state computation takes the message first and its state second: "
                "(const In&, S&)",
            "p.state_computation(\"f\", [](const In& m) { return m; });":
                "a state computation takes (const In&, S&) and returns nothing",
            # The host's batch hands the message over as an lvalue.
            "p.computation(\"c\", [](In&& m) { return m; });":
                "a computation is Out(const In&)",
            "p.partition(\"k\", [](In&& m) { return m.v; });":
                "a partition function takes the message (const In&) and returns its key",
            "p.decoder(\"d\", [](shardline::Reader& r) { r.u8(); });":
                "a decoder must return the decoded message",
            "p.computation(\"c\", [](const In& m) { (void)m; });":
                "a computation must produce a message type",
            "p.decoder(\"d\", [](int x) { return In{x}; });":
                "a decoder takes shardline::Reader& (a binary frame) or std::string_view",
            "p.computation(\"c\", [](const In& a, const In& b) { return In{a.v + b.v}; });":
                "a computation is Out(const In&), std::optional<Out>(const In&), or "
                "void(const In&, shardline::Emit<Out>&)",
            "p.encoder(\"e\", [](const In& m) { return m.v; });":
                "an encoder is void(const In&, shardline::Writer&) (binary), or returns the text",
            "p.partition(\"k\", [](const In& m) { return 1.5 * m.v; });":
                "a partition function returns an integer (or an enum) or a string key",
            "p.state_computation(\"f\", [](const auto& m, S& s) { s.n += m.v; });":
                "write out the function's parameter types, e.g. [](const In& m) { ... }",
            "p.encoder(\"e\", []() { return std::string(); });":
                "write out the function's parameter types, e.g. [](const In& m) { ... }",
            # A view into the frame would dangle once the source reads on.
            "p.decoder(\"d\", [](std::string_view line) { return line; });":
                "a message must own its data: a view or a pointer would point into a frame",
            "p.computation(\"c\", [](const In& m) { return &m; });":
                "a message must own its data",
            "p.state_computation(\"f\", [](const In& m, S& s, shardline::Emit<std::span<const int>>& e) "
            "{ e(std::span<const int>(&s.n, 1)); });":
                "a message must own its data",
            "p.state<std::string_view>(\"s\");": "a state must own its data",
            # Outputs go through emit alone: a returned value would be dropped without a word.
            "p.computation(\"c\", [](const In& m, shardline::Emit<In>& e) { e(m); return m; });":
                "a function that takes shardline::Emit<Out>& emits through it and returns void",
            "p.state_computation(\"f\", [](const In& m, S& s, shardline::Emit<In>& e) "
            "{ e(m); return s.n; });":
                "a function that takes shardline::Emit<Out>& emits through it and returns void",
            # One function object serves every shard thread: what it changes, it changes racily.
            "p.computation(\"c\", [n = 0](const In& m) mutable { return In{m.v + ++n}; });":
                "a plugin function must not change itself (a mutable lambda",
            "p.state<S>(\"s\", [n = 0]() mutable { return S{++n}; });":
                "a plugin function must not change itself (a mutable lambda",
            "p.state<S>(\"s\", [](int a, int b) { return S{a + b}; });":
                "a state factory is S() or S(std::uint64_t key), returning the state S",
            "p.state<NoDefault>(\"s\");":
                "p.state<S>(name) makes each new key's state as S{}, and S has no default "
                "constructor",
            # A lock in a state or message is never needed (one thread touches a key's state)
            # and makes it immovable.
            "p.state<Locked>(\"s\");": "a state must be movable",
            "p.state<Locked>(\"s\", [] { return Locked{}; });": "a state must be movable",
            "p.decoder(\"d\", [](std::string_view) { return Locked{}; });":
                "a message must be movable",
            # A save() or restore() of another shape would be ignored, and a reload could not
            # carry the state over.
            "p.state<BadSave>(\"s\");":
                "the state's save() must be `void save(shardline::Writer&) const`",
            "p.state<BadRestore>(\"s\");":
                "the state's restore() must be `static S restore(shardline::Reader&, "
                "std::uint32_t schema_version)`",
        }
        for line, message in cases.items():
            with self.subTest(line=line):
                source = self.write("bad.cpp", "#include <shardline/plugin.hpp>\n#include <mutex>\n"
                                    "struct In { int v = 0; };\nstruct S { int n = 0; };\n"
                                    "struct BadSave { int n = 0; void save(shardline::Writer&) {} };\n"
                                    "struct BadRestore { int n = 0; "
                                    "static BadRestore restore(shardline::Reader&) { return {}; } };\n"
                                    "struct NoDefault { explicit NoDefault(int v) : n(v) {} int n; };\n"
                                    "struct Locked { std::mutex m; int n = 0; };\n"
                                    "SHARDLINE_PLUGIN(\"bad\", \"1.0.0\", p) {\n  " + line + "\n}\n")
                p = subprocess.run(["g++", "-std=c++20", "-fsyntax-only",
                                    "-I", os.path.join(ROOT, "sdk", "include"), source],
                                   capture_output=True, text=True, timeout=120)
                self.assertNotEqual(p.returncode, 0)
                errors = [l for l in p.stderr.splitlines() if "error:" in l]
                self.assertIn("static assertion failed: " + message, errors[0])
                self.assertEqual(len(errors), 1, p.stderr)


if __name__ == "__main__":
    unittest.main()
