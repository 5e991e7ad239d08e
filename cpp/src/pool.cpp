// SegmenterPool: N engines, each call on one with a free seat (CUDA engines have two).
#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "engine.h"
#include "ifa_rt/segmenter.h"

namespace ifa_rt {

struct SegmenterPool::Impl {
  std::vector<std::unique_ptr<Segmenter>> engines;
  std::vector<int> idle;
  std::mutex mutex;
  std::condition_variable cv;

  // Borrows a seat of an engine for the lifetime of the lease.
  struct Lease {
    Impl* pool;
    int index;
    ~Lease() {
      {
        std::lock_guard<std::mutex> lock(pool->mutex);
        pool->idle.push_back(index);
      }
      pool->cv.notify_one();
    }
    Segmenter& operator*() const { return *pool->engines[index]; }
    Segmenter* operator->() const { return pool->engines[index].get(); }
  };

  Lease acquire() {
    std::unique_lock<std::mutex> lock(mutex);
    cv.wait(lock, [&] { return !idle.empty(); });
    int i = idle.back();
    idle.pop_back();
    return Lease{this, i};
  }
};

SegmenterPool::SegmenterPool(const std::string& artifact_path, const Options& options, int size)
    : impl_(std::make_unique<Impl>()) {
  if (size < 1 || size > 256)
    throw InvalidArgument("SegmenterPool: 'size': expected an integer in [1, 256], got " + std::to_string(size));
  // Unset threads: the cores shared out among the engines, so busy engines do not
  // oversubscribe the machine (N engines x all cores each would).
  Options per_engine = options;
  if (per_engine.threads == 0)
    per_engine.threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / size);
  for (int i = 0; i < size; ++i) impl_->engines.push_back(std::make_unique<Segmenter>(artifact_path, per_engine));
  // One seat per call an engine overlaps; the first seats of all engines are taken first.
  for (int seat = 0; seat < detail::overlapping_calls(*impl_->engines.front()); ++seat)
    for (int i = 0; i < size; ++i) impl_->idle.push_back(size - 1 - i);
}

SegmenterPool::~SegmenterPool() = default;

Result SegmenterPool::segment(const TensorView& images) { return impl_->acquire()->segment(images); }

void SegmenterPool::segment(const TensorView& images, uint8_t* labels, int64_t labels_size) {
  impl_->acquire()->segment(images, labels, labels_size);
}

void SegmenterPool::segment(const std::vector<TensorView>& images, const std::vector<uint8_t*>& labels) {
  impl_->acquire()->segment(images, labels);
}

LogitsResult SegmenterPool::logits(const TensorView& images) { return impl_->acquire()->logits(images); }

void SegmenterPool::logits(const TensorView& images, float* logits, int64_t size) {
  impl_->acquire()->logits(images, logits, size);
}

void SegmenterPool::segment_on_device(const TensorView& images, uint8_t* labels, int64_t labels_size, void* stream) {
  impl_->acquire()->segment_on_device(images, labels, labels_size, stream);
}

void SegmenterPool::logits_on_device(const TensorView& images, float* logits, int64_t size, void* stream) {
  impl_->acquire()->logits_on_device(images, logits, size, stream);
}

int SegmenterPool::size() const { return static_cast<int>(impl_->engines.size()); }

Segmenter& SegmenterPool::engine(int index) {
  if (index < 0 || index >= size())
    throw InvalidArgument("SegmenterPool.engine: 'index': expected an integer in [0, " + std::to_string(size() - 1) +
                          "], got " + std::to_string(index));
  return *impl_->engines[static_cast<size_t>(index)];
}

const Metadata& SegmenterPool::metadata() const { return impl_->engines.front()->metadata(); }

}  // namespace ifa_rt
