// Batcher: dynamic micro-batching over a Segmenter or SegmenterPool (algorithm in batcher.h).
#include "ifa_rt/batcher.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "batcher_request.h"
#include "batcher_workers.h"
#include "engine.h"
#include "options.h"

namespace ifa_rt {
namespace {

using detail::Clock;
using detail::complete;
using detail::Request;
using detail::RunningWorker;
using detail::same_kind;

}  // namespace

double BatcherStats::mean_batch_size() const {
  return batches == 0 ? 0.0 : static_cast<double>(batched_requests) / static_cast<double>(batches);
}

struct Batcher::Impl {
  // The engine, behind two calls: a list of same-shaped images (one batched call) and one image.
  std::function<void(const std::vector<TensorView>&, const std::vector<uint8_t*>&)> run_list;
  std::function<void(const TensorView&, uint8_t*, int64_t)> run_one;
  BatcherOptions options;

  mutable std::mutex mutex;  // guards everything below
  std::condition_variable cv;
  std::deque<Request> queue;
  bool closing = false, cancel = false, gathering = false;
  BatcherStats stats;
  double queue_us_sum = 0;

  std::mutex join_mutex;  // serialises joining in close()
  std::vector<std::thread> workers;

  std::vector<std::thread::id> worker_ids;  // set once in start(), read by close()

  static void start(const std::shared_ptr<Impl>& self, int count) {
    self->stats.batch_sizes.assign(static_cast<size_t>(self->options.max_batch) + 1, 0);
    self->workers.reserve(static_cast<size_t>(count));
    self->worker_ids.reserve(static_cast<size_t>(count));
    std::unique_lock<std::mutex> lock(self->mutex);
    try {
      // Each worker holds the Impl: a Batcher destroyed from one of its own completions is
      // gone, but the worker still has its batch to finish.
      for (int i = 0; i < count; ++i) {
        self->workers.emplace_back([self, running = std::make_shared<RunningWorker>()] { self->work(); });
        self->worker_ids.push_back(self->workers.back().get_id());
      }
    } catch (...) {  // no thread to be had: the ones started must not wait forever
      self->closing = true;
      lock.unlock();
      self->cv.notify_all();
      for (std::thread& t : self->workers) t.join();
      throw;
    }
  }

  // The last owner may be a worker that outlived its Batcher: its own thread (and any other
  // that already let go of the Impl) cannot be joined from here.
  ~Impl() {
    for (std::thread& t : workers)
      if (t.joinable()) t.detach();
  }

  bool on_worker() const {
    std::lock_guard<std::mutex> lock(mutex);
    return std::find(worker_ids.begin(), worker_ids.end(), std::this_thread::get_id()) != worker_ids.end();
  }

  // Steps 1-3 of the algorithm (lock held); returns false when the worker should exit.
  bool gather(std::unique_lock<std::mutex>& lock, std::vector<Request>* batch) {
    cv.wait(lock, [&] { return (!gathering && !queue.empty()) || (closing && queue.empty()); });
    if (queue.empty()) return false;
    gathering = true;
    batch->push_back(std::move(queue.front()));
    queue.pop_front();
    const Clock::time_point deadline = batch->front().submitted + std::chrono::microseconds(options.max_delay_us);
    const auto max_batch = static_cast<size_t>(options.max_batch);
    for (;;) {
      for (auto it = queue.begin(); it != queue.end() && batch->size() < max_batch;) {
        if (same_kind(*it, batch->front())) {
          batch->push_back(std::move(*it));
          it = queue.erase(it);
        } else {
          ++it;
        }
      }
      // A closing batcher stops waiting for company: drain runs what is there, now.
      if (batch->size() >= max_batch || closing || Clock::now() >= deadline) break;
      cv.wait_until(lock, deadline);
    }
    gathering = false;
    return true;
  }

  void work() {
    std::vector<Request> batch;
    for (;;) {
      // Room for a whole batch before gathering, so gathering never allocates.
      if (!reserve(batch)) continue;
      bool cancelled = false;
      {
        std::unique_lock<std::mutex> lock(mutex);
        if (!gather(lock, &batch)) return;
        cancelled = cancel;  // close(false) arrived while this batch was gathering
      }
      cv.notify_all();  // another worker may gather the next batch now
      if (cancelled)
        cancel_all(batch);
      else
        run(batch);
      batch.clear();
    }
  }

  // Makes room for max_batch requests; without memory for it, fails the oldest request with
  // the bad_alloc (so the queue still moves) and returns false.
  bool reserve(std::vector<Request>& batch) noexcept {
    if (batch.capacity() >= static_cast<size_t>(options.max_batch)) return true;
    try {
      batch.reserve(static_cast<size_t>(options.max_batch));
      return true;
    } catch (...) {
      const std::exception_ptr error = std::current_exception();
      Request oldest;
      {
        std::unique_lock<std::mutex> lock(mutex);
        cv.wait(lock, [&] { return !queue.empty() || closing; });
        if (queue.empty()) return true;  // closing: gather() ends the worker
        oldest = std::move(queue.front());
        queue.pop_front();
        ++stats.failed;
      }
      complete(oldest, error);
      return false;
    }
  }

  // Steps 4-5, with one more promise: nothing thrown here may end the worker (std::terminate).
  // Memory running out while batching (bad_alloc) fails the requests not yet completed.
  void run(std::vector<Request>& batch) noexcept {
    try {
      run_batch(batch);
    } catch (...) {
      // Thrown before any request was counted or completed (completing cannot throw).
      const std::exception_ptr error = std::current_exception();
      {
        std::lock_guard<std::mutex> lock(mutex);
        stats.failed += static_cast<int64_t>(batch.size());
      }
      for (Request& r : batch) complete(r, error);
    }
  }

  // Steps 4-5: one batched call, or each request alone if it throws.
  void run_batch(std::vector<Request>& batch) {
    const Clock::time_point start = Clock::now();
    std::vector<std::exception_ptr> errors(batch.size());
    bool retried = false;
    if (batch.size() == 1) {
      errors[0] = run_alone(batch[0]);
    } else {
      std::vector<TensorView> views;
      std::vector<uint8_t*> outs;
      for (const Request& r : batch) {
        views.push_back(r.image);
        outs.push_back(r.labels);
      }
      try {
        run_list(views, outs);
      } catch (...) {
        // The list call validates every image before running any, so one bad request fails
        // the whole call; rerunning each alone gives the others their labels and the bad one
        // its own error (the engine is left usable by a failed call).
        retried = true;
        for (size_t i = 0; i < batch.size(); ++i) errors[i] = run_alone(batch[i]);
      }
    }
    {
      // Counted before completing, so a caller that saw its future ready sees its batch here.
      std::lock_guard<std::mutex> lock(mutex);
      ++stats.batches;
      stats.batched_requests += static_cast<int64_t>(batch.size());
      ++stats.batch_sizes[std::min(batch.size(), stats.batch_sizes.size() - 1)];
      if (retried) ++stats.retried_batches;
      for (size_t i = 0; i < batch.size(); ++i) {
        const double waited = std::chrono::duration<double, std::micro>(start - batch[i].submitted).count();
        queue_us_sum += waited;
        stats.max_queue_us = std::max(stats.max_queue_us, waited);
        ++(errors[i] ? stats.failed : stats.completed);
      }
      stats.mean_queue_us = queue_us_sum / static_cast<double>(stats.batched_requests);
    }
    for (size_t i = 0; i < batch.size(); ++i) complete(batch[i], std::move(errors[i]));
  }

  std::exception_ptr run_alone(const Request& r) {
    try {
      run_one(r.image, r.labels, r.size);
      return nullptr;
    } catch (...) {
      return std::current_exception();
    }
  }

  void cancel_all(std::vector<Request>& requests) {
    if (requests.empty()) return;
    {
      std::lock_guard<std::mutex> lock(mutex);
      stats.cancelled += static_cast<int64_t>(requests.size());
    }
    for (Request& r : requests) {  // one exception each: completions may rethrow on other threads
      std::exception_ptr error;
      try {
        error =
            std::make_exception_ptr(Cancelled("Batcher: request cancelled: the batcher was closed without draining"));
      } catch (...) {  // no memory for the message: the bad_alloc says why instead
        error = std::current_exception();
      }
      complete(r, std::move(error));
    }
  }

  // Fails a future whose request never got as far as a completion (no memory for its result).
  void reject_future(std::promise<Result>& promise, std::exception_ptr error) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      ++stats.requests;
      ++stats.failed;
    }
    promise.set_exception(std::move(error));
  }

  // Rejects a request before it is queued: completes it on the submitting thread.
  void reject(Request& r, std::exception_ptr error) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      ++stats.requests;
      ++stats.failed;
    }
    complete(r, std::move(error));
  }
};

Batcher::Batcher(Segmenter& segmenter, const BatcherOptions& options) : impl_(std::make_shared<Impl>()) {
  options.validate();
  impl_->options = options;
  if (impl_->options.max_batch == 0) impl_->options.max_batch = segmenter.options().max_batch;
  Segmenter* s = &segmenter;
  impl_->run_list = [s](const std::vector<TensorView>& v, const std::vector<uint8_t*>& o) { s->segment(v, o); };
  impl_->run_one = [s](const TensorView& v, uint8_t* o, int64_t n) { s->segment(v, o, n); };
  Impl::start(impl_, detail::overlapping_calls(segmenter));
}

Batcher::Batcher(SegmenterPool& pool, const BatcherOptions& options) : impl_(std::make_shared<Impl>()) {
  options.validate();
  impl_->options = options;
  if (impl_->options.max_batch == 0) impl_->options.max_batch = pool.engine(0).options().max_batch;
  SegmenterPool* p = &pool;
  impl_->run_list = [p](const std::vector<TensorView>& v, const std::vector<uint8_t*>& o) { p->segment(v, o); };
  impl_->run_one = [p](const TensorView& v, uint8_t* o, int64_t n) { p->segment(v, o, n); };
  Impl::start(impl_, pool.size() * detail::overlapping_calls(pool.engine(0)));
}

Batcher::~Batcher() { close(true); }

std::future<Result> Batcher::submit(const TensorView& image) {
  // The labels live in the Result that the future hands over; shared so the callback can
  // fill it after this function returns.
  struct State {
    std::promise<Result> promise;
    Result result;
    Clock::time_point t0 = Clock::now();
  };
  auto state = std::make_shared<State>();
  std::future<Result> future = state->promise.get_future();
  const auto& shape = image.shape;
  const bool sized = shape.size() == 3 && shape[0] >= 1 && shape[1] >= 1 && shape[0] <= detail::kMaxSide &&
                     shape[1] <= detail::kMaxSide;
  if (sized) {
    try {
      state->result.shape = {shape[0], shape[1]};
      state->result.labels.resize(static_cast<size_t>(shape[0] * shape[1]));
    } catch (const std::bad_alloc&) {  // errors go through the future, this one too
      impl_->reject_future(state->promise, std::current_exception());
      return future;
    }
  }
  submit(image, state->result.labels.data(), static_cast<int64_t>(state->result.labels.size()),
         [state](std::exception_ptr error) {
           if (error) {
             state->promise.set_exception(std::move(error));
             return;
           }
           state->result.milliseconds = std::chrono::duration<double, std::milli>(Clock::now() - state->t0).count();
           state->promise.set_value(std::move(state->result));
         });
  return future;
}

void Batcher::submit(const TensorView& image, uint8_t* labels, int64_t labels_size, Callback done) {
  const std::string where = "Batcher.submit";
  if (!done) throw InvalidArgument(where + ": 'done': expected a callback, got an empty function");
  Request r{image, labels, labels_size, std::move(done), Clock::now()};
  const auto& shape = image.shape;
  // Only what batching itself needs is checked here (a single image, its output size); the
  // engine checks the rest (dtype, channels, strides, sizes) and its error reaches this
  // request alone (step 5).
  if (shape.size() != 3)
    return impl_->reject(r, std::make_exception_ptr(InvalidArgument(
                                where + ": input 'image': expected shape [H,W,3], got " + detail::shape_string(shape) +
                                " (rank " + std::to_string(shape.size()) + ")")));
  // Sized before the engine sees it (the result buffer is H*W): bound it as the engine does.
  if (shape[0] < 1 || shape[1] < 1 || shape[0] > detail::kMaxSide || shape[1] > detail::kMaxSide)
    return impl_->reject(r, std::make_exception_ptr(InvalidArgument(
                                where + ": input 'image': expected height and width in [1, " +
                                std::to_string(detail::kMaxSide) + "], got shape " + detail::shape_string(shape))));
  const int64_t need = shape[0] * shape[1];
  if (labels == nullptr || labels_size != need)
    return impl_->reject(
        r, std::make_exception_ptr(
               InvalidArgument(where + ": output 'labels': expected " + std::to_string(need) + " uint8 elements, got " +
                               (labels == nullptr ? std::string("a null pointer") : std::to_string(labels_size)))));
  std::exception_ptr not_queued;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    if (!impl_->closing) {
      try {
        impl_->queue.push_back(std::move(r));  // unchanged if it throws (bad_alloc)
        ++impl_->stats.requests;
        r.done = nullptr;
      } catch (...) {
        not_queued = std::current_exception();
      }
    }
  }
  if (not_queued) return impl_->reject(r, not_queued);
  if (r.done)  // not queued: closed
    return impl_->reject(r, std::make_exception_ptr(Error(where + ": the batcher is closed")));
  // All: the gathering worker waits for more of its shape, an idle one for any request.
  impl_->cv.notify_all();
}

void Batcher::close(bool drain) {
  std::vector<Request> dropped;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->closing = true;
    if (!drain) {
      impl_->cancel = true;
      for (Request& r : impl_->queue) dropped.push_back(std::move(r));
      impl_->queue.clear();
    }
  }
  impl_->cv.notify_all();
  impl_->cancel_all(dropped);
  if (!impl_->on_worker()) {
    std::lock_guard<std::mutex> join(impl_->join_mutex);
    for (std::thread& t : impl_->workers)
      if (t.joinable()) t.join();
    return;
  }
  // Closed (or destroyed) from one of its own completions. Nobody else will run the queue
  // while this worker is in the callback, so it drains here. It then joins the other workers
  // (so none touches the engine after this returns) unless another close() is already
  // joining them; its own thread is joined by that close(), or let go by ~Impl.
  if (drain) impl_->work();
  std::unique_lock<std::mutex> join(impl_->join_mutex, std::try_to_lock);
  if (!join.owns_lock()) return;
  for (std::thread& t : impl_->workers)
    if (t.joinable() && t.get_id() != std::this_thread::get_id()) t.join();
}

bool Batcher::closed() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->closing;
}

BatcherStats Batcher::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->stats;
}

const BatcherOptions& Batcher::options() const { return impl_->options; }

bool Batcher::wait_for_workers(double seconds) { return detail::wait_for_no_workers(seconds); }

}  // namespace ifa_rt
