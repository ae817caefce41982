// make_source / make_sink: the one place that maps a topology's kinds to connector classes.
// [control thread]

#include <stdexcept>

#include "connectors/sink.hpp"
#include "connectors/source.hpp"
#include "connectors/tcp_source.hpp"

namespace shardline::connectors {

// Defined beside their classes, which stay private to their files (file_source.cpp, sinks.cpp,
// tcp_sink.cpp); TcpSource has a header because tests drive it directly.
std::unique_ptr<Source> make_file_source(const topology::SourceSpec& spec);
std::unique_ptr<Source> make_stdin_source(const topology::SourceSpec& spec);
std::unique_ptr<Sink> make_file_sink(const topology::SinkSpec& spec);
std::unique_ptr<Sink> make_stdout_sink(const topology::SinkSpec& spec);
std::unique_ptr<Sink> make_discard_sink(const topology::SinkSpec& spec);
std::unique_ptr<Sink> make_tcp_sink(const topology::SinkSpec& spec);

std::unique_ptr<Source> make_source(const topology::SourceSpec& spec) {
  switch (spec.kind) {
    case topology::SourceKind::tcp:
      return std::make_unique<TcpSource>(spec.address, spec.framing, spec.max_frame,
                                         spec.connections);
    case topology::SourceKind::file: return make_file_source(spec);
    case topology::SourceKind::stdin_lines: return make_stdin_source(spec);
  }
  throw std::logic_error("make_source: unknown source kind");
}

std::unique_ptr<Sink> make_sink(const topology::SinkSpec& spec) {
  switch (spec.kind) {
    case topology::SinkKind::tcp: return make_tcp_sink(spec);
    case topology::SinkKind::file: return make_file_sink(spec);
    case topology::SinkKind::stdout_lines: return make_stdout_sink(spec);
    case topology::SinkKind::discard: return make_discard_sink(spec);
  }
  throw std::logic_error("make_sink: unknown sink kind");
}

}  // namespace shardline::connectors
