// SPDX-License-Identifier: MIT
// A process-wide cache of expensive objects shared by key, held only while someone holds them:
// the detect element's model pool (N camera pipelines in one process hold one copy of the
// weights; the key names the file and every option that changes the loaded model). A template,
// so it is tested (and run under ThreadSanitizer) with objects that need no model.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace autoassign {

template <typename T>
class SharedCache {
 public:
  using Factory = std::function<std::shared_ptr<T>()>;

  /// The object for `key`, made by `make` if nobody holds one. `make` runs outside the lock (a
  /// model load takes seconds); if another thread made the same key meanwhile, that one is
  /// returned and this one dropped. `fresh` always makes a new object (a model file set again
  /// may have changed on disk), which then becomes the shared one. Exceptions from `make`
  /// propagate and cache nothing.
  std::shared_ptr<T> acquire(const std::string& key, const Factory& make, bool fresh = false) {
    if (!fresh) {
      std::lock_guard<std::mutex> lock(lock_);
      auto it = live_.find(key);
      if (it != live_.end()) {
        if (auto obj = it->second.lock()) return obj;
      }
    }
    std::shared_ptr<T> made = make();
    std::lock_guard<std::mutex> lock(lock_);
    for (auto it = live_.begin(); it != live_.end();) {
      it = it->second.expired() ? live_.erase(it) : std::next(it);
    }
    auto& slot = live_[key];
    if (!fresh) {
      if (auto other = slot.lock()) return other;
    }
    slot = made;
    if (keep_) kept_[key] = made;
    return made;
  }

  /// Keep every object made from now on (and those alive) after their last holder lets go,
  /// until keep(false): a service that adds and removes cameras at run time does not reload
  /// the model each time.
  void keep(bool keep) {
    std::lock_guard<std::mutex> lock(lock_);
    keep_ = keep;
    if (keep) {
      for (auto& [key, weak] : live_) {
        if (auto obj = weak.lock()) kept_[key] = obj;
      }
    } else {
      kept_.clear();
    }
  }

  /// Whether keep(true) is in force.
  bool keeping() const {
    std::lock_guard<std::mutex> lock(lock_);
    return keep_;
  }

  /// Objects alive now (held by someone or kept).
  size_t alive() const {
    std::lock_guard<std::mutex> lock(lock_);
    size_t n = 0;
    for (const auto& [key, weak] : live_) n += weak.expired() ? 0 : 1;
    return n;
  }

 private:
  mutable std::mutex lock_;
  std::map<std::string, std::weak_ptr<T>> live_;
  bool keep_ = false;
  std::map<std::string, std::shared_ptr<T>> kept_;
};

}  // namespace autoassign
