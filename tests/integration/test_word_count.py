"""Word count over a real text file: every "word count" line the pipeline emits is checked
against a count made here, and 1, 2 and 4 shards must give the same lines."""
import collections
import os
import re
import unittest

from harness import read, DATA, PLUGINS, TempDirTest, run, summary

TEXT = os.path.join(DATA, "word-count", "bill_of_rights.txt")


def words(line):
    return re.findall(r"[a-z0-9']+", line.lower())


class WordCount(TempDirTest):
    def run_word_count(self, shards, state_options=""):
        topology = self.write("topology.toml", f"""
shards = {shards}
[plugins]
wc = "{PLUGINS}/word_count.so"
[states.counts]
factory = "wc.count"
{state_options}
[[pipelines]]
name = "words"
source = {{ kind = "file", path = "{TEXT}", framing = "lines", decoder = "wc.line" }}
steps = [ {{ computation = "wc.split" }},
          {{ state_computation = "wc.count", state = "counts", partition = "wc.word" }} ]
sink = {{ kind = "file", path = "{self.path('out.txt')}", framing = "lines", encoder = "wc.text" }}
""")
        status, _, err = run(topology)
        self.assertEqual(status, 0, err)
        self.last_err = err
        return read(self.path("out.txt")).splitlines(), summary(err)

    def test_counts_match(self):
        lines, counts = self.run_word_count(2)
        text = read(TEXT).splitlines()
        expected = collections.Counter(w for l in text for w in words(l))
        # Each occurrence emits the running count: word 1, word 2, ..., word n.
        want = sorted(f"{w} {i}" for w, n in expected.items() for i in range(1, n + 1))
        self.assertEqual(sorted(lines), want)
        # One key's outputs come out in order (one source, one shard per key).
        last = {}
        for l in lines:
            w, n = l.rsplit(" ", 1)
            self.assertEqual(int(n), last.get(w, 0) + 1, f"out of order: {l}")
            last[w] = int(n)
        self.assertEqual(counts["words"]["in"], len(text))
        self.assertEqual(counts["state:counts"], len(expected))

    def test_shard_counts_agree(self):
        one = sorted(self.run_word_count(1)[0])
        self.assertEqual(len(one), sum(len(words(l)) for l in read(TEXT).splitlines()))
        self.assertEqual(one, sorted(self.run_word_count(2)[0]))
        self.assertEqual(one, sorted(self.run_word_count(4)[0]))


    def test_only_declared_words_counted(self):
        lines, counts = self.run_word_count(2, 'keys = ["the"]\nunknown_keys = "reject"')
        occurrences = sum(words(l).count("the") for l in read(TEXT).splitlines())
        self.assertEqual(lines, [f"the {i}" for i in range(1, occurrences + 1)])
        all_words = sum(len(words(l)) for l in read(TEXT).splitlines())
        self.assertEqual(counts["words"]["errors"], all_words - occurrences)
        self.assertEqual(counts["state:counts"], 1)
        self.assertRegex(self.last_err, r"(?m)state counts: 1 key$")
        # A string key reaches the shard as its hash: the message says so, names the word (the
        # message, a std::string) and the state.
        self.assertRegex(self.last_err, r"a string key \(hash \d+, of message \"[a-z0-9]+\"\) is "
                                        r"not declared in state 'counts'")


if __name__ == "__main__":
    unittest.main()
