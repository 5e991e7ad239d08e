#pragma once
// Dynamic micro-batching over a Segmenter or SegmenterPool (no torch includes).
//
// Like Triton's dynamic batcher: single-image requests submitted concurrently are gathered
// into one batched engine call, so the per-call overhead (locking, staging, graph dispatch) is
// paid once per batch instead of once per image. Each worker thread (one per engine) loops:
//   1. wait until a request is queued and no other worker is gathering a batch;
//   2. take the oldest request; its dtype and shape are the batch's;
//   3. move queued requests of that dtype and shape into the batch, oldest first, until it
//      holds max_batch or max_delay has passed since the oldest one was submitted (or the
//      batcher closes); requests of other shapes keep their place in the queue;
//   4. run the batch as one list call: the engine splits it over its planned bucket batch
//      sizes and pads a partial one up to the nearest bucket;
//   5. if that call throws, run each request alone, so an error reaches only the request
//      that caused it; then complete every request of the batch in submission order.
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <vector>

#include "ifa_rt/segmenter.h"

namespace ifa_rt {

/// A request that was dropped, not run: the batcher was closed without draining.
class Cancelled : public Error {
 public:
  using Error::Error;
};

/// How a Batcher gathers requests. Defaults are declared here, once.
struct BatcherOptions {
  /// Most requests in one batch; 0 = the engine's max_batch (its largest planned bucket).
  int64_t max_batch = 0;
  /// How long the oldest request may wait for others of its shape, in microseconds. 0 (as in
  /// Triton) batches only what is already queued: no added latency when idle, and batches
  /// still form under load, while the engine is busy.
  int64_t max_delay_us = 0;

  /// Throws InvalidArgument naming the first bad field.
  void validate() const;
};

/// Counters since construction.
struct BatcherStats {
  int64_t requests = 0;          ///< submitted (= completed + failed + cancelled when idle)
  int64_t completed = 0;         ///< finished with labels
  int64_t failed = 0;            ///< finished with an error (bad input, engine error, closed)
  int64_t cancelled = 0;         ///< dropped by close(false)
  int64_t batches = 0;           ///< batched engine calls made (one per gathered batch)
  int64_t batched_requests = 0;  ///< requests over all batches (mean = this / batches)
  int64_t retried_batches = 0;   ///< batches whose call threw and whose requests ran alone
  /// batch_sizes[k]: how many batches held k requests (size max_batch + 1).
  std::vector<int64_t> batch_sizes;
  double mean_queue_us = 0;  ///< mean wait from submit to the start of the request's batch
  double max_queue_us = 0;   ///< longest such wait
  /// Mean requests per batch (0 before the first batch).
  double mean_batch_size() const;
};

/// Gathers concurrent single-image requests into batched calls on a Segmenter or a
/// SegmenterPool (one worker thread per engine, two per CUDA engine). Thread-safe; not
/// copyable or movable. The engine must outlive the Batcher. The destructor drains the queue
/// and joins the workers.
class Batcher {
 public:
  /// Completion of one request: null on success, else the error (InvalidArgument for a bad
  /// input, Error for an engine failure or a closed batcher, Cancelled when dropped). Called
  /// once per request, on a worker thread (or on the submitting thread when the request is
  /// rejected before being queued), never with the batcher's lock held. It must not throw (an
  /// exception from it is dropped so the other requests of the batch still complete). It may
  /// close or destroy the Batcher: that worker then drains the queue itself (or cancels it)
  /// before close() returns, and finishes its own batch's completions after.
  using Callback = std::function<void(std::exception_ptr error)>;

  /// One worker over `segmenter` (two over a CUDA engine: one stages and queues its batch
  /// while the other's computes). Throws InvalidArgument for bad options.
  explicit Batcher(Segmenter& segmenter, const BatcherOptions& options = BatcherOptions());
  /// pool.size() workers over `pool` (twice that for CUDA engines), each batch on an idle
  /// engine.
  explicit Batcher(SegmenterPool& pool, const BatcherOptions& options = BatcherOptions());
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  /// Queues one uint8 RGB image [H,W,3] (any non-negative strides) and returns its labels
  /// [H,W]; Result::milliseconds is the time from submit to completion, queueing included.
  /// The image memory must stay valid until the future is ready. Errors arrive through the
  /// future, never thrown here.
  std::future<Result> submit(const TensorView& image);

  /// Same, writing the labels into the caller's contiguous buffer of `labels_size` bytes
  /// (H*W), then calling `done`. Image and buffer must stay valid until `done` is called.
  /// Throws InvalidArgument only for an empty `done`.
  void submit(const TensorView& image, uint8_t* labels, int64_t labels_size, Callback done);

  /// Stops accepting requests (later submits fail with Error) and joins the workers. drain:
  /// run every queued request first; otherwise queued ones (and a batch still gathering)
  /// complete with Cancelled, and only batches already running finish. Idempotent.
  void close(bool drain = true);

  /// True once close() has begun.
  bool closed() const;

  /// Counters since construction.
  BatcherStats stats() const;

  /// The options after resolution (max_batch 0 becomes the engine's).
  const BatcherOptions& options() const;

  /// Waits up to `seconds` until no worker of any Batcher is running; false on timeout. For
  /// shutdown: a Batcher destroyed from its own completion returns before its worker has
  /// finished, and an embedding runtime (Python) must not finalize under that worker.
  static bool wait_for_workers(double seconds);

  struct Impl;

 private:
  // Shared with the workers: one destroyed from its own completion outlives the Batcher.
  std::shared_ptr<Impl> impl_;
};

}  // namespace ifa_rt
