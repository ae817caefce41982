#include "metrics/run_summary.hpp"

#include <cstdio>
#include <sstream>

namespace shardline::metrics {

namespace {
/// "1234567 in (240.8k/s)": a counter and its rate over the last interval.
std::string with_rate(std::uint64_t now, std::uint64_t before, double seconds, const char* what) {
  double rate = seconds > 0 ? static_cast<double>(now - before) / seconds : 0;
  const char* unit = rate >= 1e6 ? "M" : rate >= 1e3 ? "k" : "";
  rate /= rate >= 1e6 ? 1e6 : rate >= 1e3 ? 1e3 : 1;
  char buf[96];
  std::snprintf(buf, sizeof buf, "%llu %s (%.*f%s/s)", static_cast<unsigned long long>(now), what,
                *unit ? 1 : 0, rate, unit);
  return buf;
}

/// "152us", "2.1ms", "1.20s": a duration in ns, to two or three significant digits.
std::string duration(double ns) {
  char buf[32];
  if (ns < 1e3) std::snprintf(buf, sizeof buf, "%.0fns", ns);
  else if (ns < 1e6) std::snprintf(buf, sizeof buf, "%.*fus", ns < 1e4 ? 1 : 0, ns / 1e3);
  else if (ns < 1e9) std::snprintf(buf, sizeof buf, "%.*fms", ns < 1e7 ? 1 : 0, ns / 1e6);
  else std::snprintf(buf, sizeof buf, "%.2fs", ns / 1e9);
  return buf;
}

/// "p50 152us, p99 2.1ms, p99.9 4.0ms, p99.99 6.1ms, max 7.2ms".
std::string percentiles(const LatencySnapshot& l) {
  return "p50 " + duration(l.quantile(0.5)) + ", p99 " + duration(l.quantile(0.99)) +
         ", p99.9 " + duration(l.quantile(0.999)) + ", p99.99 " + duration(l.quantile(0.9999)) +
         ", max " + duration(l.max());
}
}  // namespace

std::string RunSummary::line() const {
  char head[48];
  std::snprintf(head, sizeof head, "done in %.3f s", seconds);
  return counts(head, nullptr, 0);
}

std::string RunSummary::progress_line(const std::vector<PipelineSummary>& before,
                                      double seconds) const {
  return counts("running", &before, seconds);
}

std::string RunSummary::counts(std::string_view head, const std::vector<PipelineSummary>* before,
                               double seconds) const {
  std::ostringstream o;
  o << head;
  for (std::size_t i = 0; i < pipelines.size(); ++i) {
    const auto& p = pipelines[i];
    o << "; pipeline " << p.name << ": ";
    if (before && i < before->size())
      o << with_rate(p.in, (*before)[i].in, seconds, "in") << ", "
        << with_rate(p.out, (*before)[i].out, seconds, "out");
    else
      o << p.in << " in, " << p.out << " out";
    o << ", " << p.errors << " errors";
    if (p.bad_input) o << ", " << p.bad_input << " bad input";
    if (p.lost) o << ", " << p.lost << " lost";
    if (p.dead_letters_lost) o << ", " << p.dead_letters_lost << " dead letters lost";
    if (p.dropped) o << ", " << p.dropped << " dropped by the decoder";
    if (p.sink_resets) o << ", " << p.sink_resets << " sink resets";
  }
  for (std::size_t i = 0; i < pipelines.size(); ++i) {
    const auto& p = pipelines[i];
    const LatencySnapshot l =
        before && i < before->size() ? p.latency.since((*before)[i].latency) : p.latency;
    if (l.total()) o << "; latency of " << p.name << " (source to sink): " << percentiles(l);
  }
  for (const auto& st : states)
    o << "; state " << st.name << ": " << st.keys << (st.keys == 1 ? " key" : " keys");
  return o.str();
}

}  // namespace shardline::metrics
