#pragma once
// Results that several policies compute identically on one traced layer of one request, e.g. exact
// H2O's attention sums over a prompt from which nothing has been evicted yet: the same for every
// budget, and the most expensive kernel of a comparison that runs H2O at several budgets. The engine
// makes one SharedResults per traced layer replay (EvictionContext::shared); a policy looks a result
// up by a key naming everything it depends on besides the layer's trace. The first caller computes
// it; later callers wait and, where the computation runs TBB tasks, help with it
// (tbb::collaborative_call_once), so no core idles. Results are pure functions of the key and the
// trace, so the outcome depends neither on which policy computed it nor on the thread count.
#include <tbb/collaborative_call_once.h>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace kvsim {

class SharedResults {
 public:
  // REQUIRES: every call with `key` asks for the same T. If `compute` throws, the exception reaches
  // this caller and the next caller computes again.
  template <typename T>
  std::shared_ptr<const T> get_or_compute(const std::string& key, const std::function<T()>& compute) {
    Entry* entry = nullptr;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      entry = &entries_.try_emplace(key).first->second;  // map nodes do not move
    }
    tbb::collaborative_call_once(entry->once, [&] { entry->value = std::make_shared<const T>(compute()); });
    return std::static_pointer_cast<const T>(entry->value);
  }

 private:
  struct Entry {
    tbb::collaborative_once_flag once;
    std::shared_ptr<const void> value;
  };
  std::mutex mutex_;
  std::map<std::string, Entry> entries_;
};

}  // namespace kvsim
