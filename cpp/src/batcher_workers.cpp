// The process-wide count of Batcher worker threads (batcher_workers.h).
#include "batcher_workers.h"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace ifa_rt::detail {
namespace {

std::mutex g_workers_mutex;
std::condition_variable g_workers_done;
int64_t g_workers_running = 0;

}  // namespace

RunningWorker::RunningWorker() {
  std::lock_guard<std::mutex> lock(g_workers_mutex);
  ++g_workers_running;
}

RunningWorker::~RunningWorker() {
  std::lock_guard<std::mutex> lock(g_workers_mutex);
  if (--g_workers_running == 0) g_workers_done.notify_all();
}

bool wait_for_no_workers(double seconds) {
  std::unique_lock<std::mutex> lock(g_workers_mutex);
  return g_workers_done.wait_for(lock, std::chrono::duration<double>(seconds), [] { return g_workers_running == 0; });
}

}  // namespace ifa_rt::detail
