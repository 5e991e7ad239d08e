#pragma once
// Worker threads of every Batcher in the process, counted so that Batcher::wait_for_workers
// can wait until none runs (an interpreter's exit must not outlive a worker that needs it).

namespace ifa_rt::detail {

/// Counts one worker thread for as long as it lives.
struct RunningWorker {
  RunningWorker();
  ~RunningWorker();
  RunningWorker(const RunningWorker&) = delete;
  RunningWorker& operator=(const RunningWorker&) = delete;
};

/// Waits until no worker runs; false when `seconds` passed first.
bool wait_for_no_workers(double seconds);

}  // namespace ifa_rt::detail
