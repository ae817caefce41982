#include "engine/thread_setup.hpp"

#include <pthread.h>
#include <sched.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "loader/plugin_call.hpp"

namespace shardline::engine {

void setup_thread(std::string_view name, topology::Scheduling scheduling) {
  char shown[16];  // the kernel's limit, with the terminating zero
  const std::size_t n = std::min(name.size(), sizeof shown - 1);
  std::memcpy(shown, name.data(), n);
  shown[n] = '\0';
  pthread_setname_np(pthread_self(), shown);
  loader::watch_plugin_calls();  // the control thread notices a plugin call that never returns

  if (scheduling != topology::Scheduling::throughput) return;
  const sched_param param{};  // SCHED_BATCH takes no priority
  if (sched_setscheduler(0, SCHED_BATCH, &param) != 0) {
    const int error = errno;
    static std::once_flag warned;
    std::call_once(warned, [error] {
      spdlog::warn("cannot run the engine's threads under SCHED_BATCH ({}); they keep the default "
                   "policy (set scheduling = \"latency\" to silence this)",
                   std::strerror(error));
    });
  }
}

}  // namespace shardline::engine
