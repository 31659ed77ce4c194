// SPDX-License-Identifier: MIT
// The detect element's scheduling and model sharing, without GStreamer and without a model:
// jobs are plain functions that block on latches, so every interleaving the element meets
// (a frame arriving while the worker is busy, a flush during an inference, stop with a frame
// pending) is set up exactly. These tests also run under ThreadSanitizer (.ci/tsan).
#include "autoassign/core/scheduler.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "autoassign/core/shared_cache.h"

namespace autoassign {
namespace {

// A one-shot gate: wait() blocks until open().
class Latch {
 public:
  void open() {
    std::lock_guard<std::mutex> lock(m_);
    open_ = true;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(m_);
    cv_.wait(lock, [&] { return open_; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool open_ = false;
};

InferenceResult result_with(float x1, int64_t pts, double ms) {
  InferenceResult r;
  Detection d;
  d.x1 = x1;
  d.x2 = x1 + 0.1f;
  d.y2 = 0.1f;
  d.score = 0.9f;
  r.detections = {d};
  r.pts = pts;
  r.ms = ms;
  return r;
}

// The frame a job owns: released (counted) when the last job holding it is destroyed, run or not.
std::shared_ptr<int> counted_frame(int id, std::atomic<int>& released) {
  return std::shared_ptr<int>(new int(id), [&released](int* p) {
    released++;
    delete p;
  });
}

InferenceScheduler::Options drop_when_busy() {
  InferenceScheduler::Options o;
  o.drop_when_busy = true;
  return o;
}

// A model-cache factory that counts what it makes.
SharedCache<int>::Factory counting_factory(std::atomic<int>& made, int value) {
  return [&made, value] {
    made++;
    return std::make_shared<int>(value);
  };
}

// Polls until `done` holds (the worker finishes asynchronously), at most 5 s.
template <typename F>
bool eventually(F done) {
  for (int i = 0; i < 500; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST(InferenceScheduler, IntervalInfersEveryNthFrameAndRepeatsInBetween) {
  InferenceScheduler s({});
  std::vector<bool> infers;
  for (int n = 0; n < 7; ++n) infers.push_back(s.next_frame_infers(3));
  EXPECT_EQ(infers, (std::vector<bool>{true, false, false, true, false, false, true}));
  EXPECT_FALSE(s.repeated(true).has_result);  // nothing inferred yet
  const auto carried = s.record(result_with(0.2f, 1000, 10));
  EXPECT_TRUE(carried.has_result && carried.fresh);
  const auto again = s.repeated(true);
  ASSERT_TRUE(again.has_result);
  EXPECT_FALSE(again.fresh);
  EXPECT_FLOAT_EQ(again.result.detections[0].x1, 0.2f);
  EXPECT_EQ(again.result.pts, 1000);  // the source frame's time, for the tracker
  EXPECT_FALSE(s.repeated(false).has_result);
  // Interval 0 is taken as 1: every frame.
  EXPECT_TRUE(s.next_frame_infers(0));
  EXPECT_TRUE(s.next_frame_infers(0));
}

TEST(InferenceScheduler, FlushForgetsTheResultAndCountsAnew) {
  InferenceScheduler s({});
  EXPECT_TRUE(s.next_frame_infers(2));
  s.record(result_with(0.2f, 0, 10));
  EXPECT_FALSE(s.next_frame_infers(2));
  s.flush();
  EXPECT_FALSE(s.repeated(true).has_result);  // no boxes from before a seek
  EXPECT_TRUE(s.next_frame_infers(2));        // frame 0 of the new segment
}

TEST(InferenceScheduler, LatencyAverageAndReportThresholds) {
  InferenceScheduler s({});
  s.set_inference_ms(10);  // the warm-up run, reported as it is
  EXPECT_FALSE(s.latency_report_due());
  s.record(result_with(0, 0, 20));  // 0.9 * 10 + 0.1 * 20 = 11: within 25 % of 10
  EXPECT_DOUBLE_EQ(s.inference_ms(), 11.0);
  EXPECT_FALSE(s.latency_report_due());
  for (int i = 0; i < 3; ++i) s.record(result_with(0, 0, 30));  // 11 -> 12.9 -> 14.61 -> 16.149
  EXPECT_NEAR(s.inference_ms(), 16.149, 1e-9);
  EXPECT_TRUE(s.latency_report_due());   // above 12.5
  EXPECT_FALSE(s.latency_report_due());  // now reported
  EXPECT_NEAR(s.report_latency_ms(), 16.149, 1e-9);
  InferenceScheduler first({});
  first.record(result_with(0, 0, 42));  // the first measurement sets the average
  EXPECT_DOUBLE_EQ(first.inference_ms(), 42.0);
}

// Drop-when-busy: while the worker is busy, newer frames replace the pending one; the replaced
// frames are released unrun, and the newest is what runs next.
TEST(InferenceScheduler, DropWhenBusyRunsTheNewestFrameAndReleasesTheOthers) {
  InferenceScheduler s(drop_when_busy());
  EXPECT_FALSE(s.latest().has_result);
  Latch started, release;
  std::atomic<int> ran{0}, released{0};
  std::vector<int> order;
  std::mutex order_lock;
  auto job = [&](int id, Latch* block) {
    auto frame = counted_frame(id, released);
    return [&, frame, block, id] {
      {
        std::lock_guard<std::mutex> lock(order_lock);
        order.push_back(id);
      }
      if (block) {
        started.open();
        block->wait();
      }
      ran++;
      return result_with(0.1f * static_cast<float>(*frame), id, 5);
    };
  };
  s.submit(job(1, &release));
  started.wait();  // the worker is inside frame 1
  for (int id = 2; id <= 5; ++id) s.submit(job(id, nullptr));
  EXPECT_EQ(released.load(), 3);  // frames 2, 3, 4 replaced before they ran
  EXPECT_FALSE(s.latest().has_result);
  release.open();
  ASSERT_TRUE(eventually([&] { return ran.load() == 2; }));
  ASSERT_TRUE(eventually([&] { return s.latest().has_result; }));
  EXPECT_EQ(order, (std::vector<int>{1, 5}));
  EXPECT_EQ(released.load(), 5);
  s.stop();
}

TEST(InferenceScheduler, DropWhenBusyResultIsFreshOnceThenRepeated) {
  InferenceScheduler s(drop_when_busy());
  s.submit([] { return result_with(0.3f, 7, 12); });
  ASSERT_TRUE(eventually([&] { return s.inference_ms() > 0; }));
  const auto first = s.latest();
  ASSERT_TRUE(first.has_result);
  EXPECT_TRUE(first.fresh);
  EXPECT_EQ(first.result.pts, 7);
  EXPECT_DOUBLE_EQ(first.result.ms, 12);
  const auto second = s.latest();
  EXPECT_TRUE(second.has_result);
  EXPECT_FALSE(second.fresh);
}

// A flush while the worker infers on a frame from before it: that result is thrown away.
TEST(InferenceScheduler, FlushDuringAnInferenceDiscardsItsResult) {
  InferenceScheduler s(drop_when_busy());
  Latch started, release;
  std::atomic<bool> done{false};
  s.submit([&] {
    started.open();
    release.wait();
    done = true;
    return result_with(0.5f, 1, 5);
  });
  started.wait();
  s.flush();
  release.open();
  ASSERT_TRUE(eventually([&] { return done.load(); }));
  s.stop();  // joins: the worker has stored (or dropped) the result by now
  EXPECT_FALSE(s.latest().has_result);
}

TEST(InferenceScheduler, AJobThatThrowsIsReportedOnce) {
  InferenceScheduler s(drop_when_busy());
  s.submit([]() -> InferenceResult { throw std::runtime_error("out of memory"); });
  ASSERT_TRUE(eventually([&] { return !s.error().empty(); }));
  EXPECT_EQ(s.error(), "inference failed: out of memory");
  s.submit([]() -> InferenceResult { throw 42; });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(s.error(), "inference failed: out of memory");  // the first one stays
}

// stop() with a frame pending releases it unrun; submit after stop() is ignored; the
// destructor after stop() is fine.
TEST(InferenceScheduler, StopReleasesThePendingFrame) {
  auto s = std::make_unique<InferenceScheduler>(drop_when_busy());
  Latch started, release;
  std::atomic<int> released{0};
  s->submit([&] {
    started.open();
    release.wait();
    return InferenceResult{};
  });
  started.wait();
  auto frame = counted_frame(2, released);
  s->submit([frame] { return InferenceResult{}; });
  frame.reset();
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    release.open();
  });
  s->stop();  // waits for the running job, drops the pending one
  releaser.join();
  EXPECT_EQ(released.load(), 1);
  s->submit([]() -> InferenceResult { throw std::logic_error("ran after stop"); });
  EXPECT_TRUE(s->error().empty());
  s.reset();
}

// The streaming thread, a flushing thread and a querying thread at once against the worker
// (the element's threads): nothing is lost or raced (ThreadSanitizer checks the latter).
TEST(InferenceScheduler, ConcurrentSubmitFlushAndQueries) {
  InferenceScheduler s(drop_when_busy());
  std::atomic<int> made{0}, released{0};
  std::atomic<bool> stop{false};
  std::thread flusher([&] {
    while (!stop) {
      s.flush();
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  std::thread querier([&] {
    while (!stop) {
      s.report_latency_ms();
      (void)s.error();
    }
  });
  for (int i = 0; i < 2000; ++i) {
    made++;
    auto frame = counted_frame(i, released);
    s.submit([frame] { return result_with(0.01f, *frame, 1); });
    (void)s.latest();
  }
  stop = true;
  flusher.join();
  querier.join();
  s.stop();
  EXPECT_EQ(released.load(), made.load());  // every frame released exactly once
  EXPECT_TRUE(s.error().empty());
}

// The model pool: one object per key while held, made once even when threads race for it.
TEST(SharedCache, OneObjectPerKeyWhileHeld) {
  SharedCache<int> cache;
  std::atomic<int> made{0};
  const auto make = counting_factory(made, 7);
  auto a = cache.acquire("m.pt", make);
  auto b = cache.acquire("m.pt", make);
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(made.load(), 1);
  auto c = cache.acquire("other.pt", make);
  EXPECT_NE(a.get(), c.get());
  EXPECT_EQ(cache.alive(), 2u);
  a.reset();
  b.reset();
  EXPECT_EQ(cache.alive(), 1u);  // nobody holds m.pt: unloaded
  auto d = cache.acquire("m.pt", make);
  EXPECT_EQ(made.load(), 3);
  // fresh: a new object even though one is held, and it becomes the shared one.
  auto e = cache.acquire("m.pt", make, /*fresh=*/true);
  EXPECT_NE(d.get(), e.get());
  EXPECT_EQ(cache.acquire("m.pt", make).get(), e.get());
  // A failing factory caches nothing.
  EXPECT_THROW(
      cache.acquire("bad.pt",
                    []() -> std::shared_ptr<int> { throw std::runtime_error("no such file"); }),
      std::runtime_error);
  EXPECT_EQ(cache.alive(), 2u);  // c and e; d is still held, but e replaced it as the shared one
}

TEST(SharedCache, KeepHoldsObjectsWithNoUser) {
  SharedCache<int> cache;
  std::atomic<int> made{0};
  const auto make = counting_factory(made, 1);
  cache.keep(true);
  cache.acquire("m.pt", make);  // dropped at once by the caller
  EXPECT_EQ(cache.alive(), 1u);
  cache.acquire("m.pt", make);
  EXPECT_EQ(made.load(), 1);
  cache.keep(false);
  EXPECT_EQ(cache.alive(), 0u);
}

TEST(SharedCache, ThreadsRacingForOneKeyShareOneObject) {
  SharedCache<int> cache;
  std::atomic<int> made{0};
  Latch go;
  std::vector<std::shared_ptr<int>> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      go.wait();
      got[t] = cache.acquire("m.pt", [&] {
        made++;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a model load
        return std::make_shared<int>(t);
      });
    });
  }
  go.open();
  for (auto& th : threads) th.join();
  for (int t = 1; t < 4; ++t) EXPECT_EQ(got[t].get(), got[0].get());
  // Several may have loaded at once (the load runs outside the lock), but one copy survives.
  EXPECT_GE(made.load(), 1);
  EXPECT_EQ(cache.alive(), 1u);
}

}  // namespace
}  // namespace autoassign
