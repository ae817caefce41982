"""The plugin author's first job, from outside this tree: install Shardline, then build the
README's hello-world plugin in a project of its own with find_package(shardline) and
shardline_add_plugin(), and run it with the installed shardline binary."""
import os
import re
import subprocess
import unittest

from harness import BUILD, DATA, TempDirTest, read, summary

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


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


if __name__ == "__main__":
    unittest.main()
