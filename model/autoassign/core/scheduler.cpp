// SPDX-License-Identifier: MIT
#include "autoassign/core/scheduler.h"

#include <algorithm>
#include <utility>

namespace autoassign {

InferenceScheduler::InferenceScheduler(const Options& options) : options_(options) {
  if (options_.drop_when_busy) worker_ = std::thread([this] { worker_loop(); });
}

InferenceScheduler::~InferenceScheduler() { stop(); }

bool InferenceScheduler::next_frame_infers(unsigned inference_interval) {
  std::lock_guard<std::mutex> lock(lock_);
  return frame_count_++ % std::max(1u, inference_interval) == 0;
}

FrameBoxes InferenceScheduler::repeated(bool repeat_metadata) const {
  std::lock_guard<std::mutex> lock(lock_);
  FrameBoxes boxes;
  if (repeat_metadata && have_last_) {
    boxes.has_result = true;
    boxes.result = last_;
  }
  return boxes;
}

FrameBoxes InferenceScheduler::record(InferenceResult result) {
  FrameBoxes boxes;
  boxes.has_result = true;
  boxes.fresh = true;
  boxes.result = result;
  std::lock_guard<std::mutex> lock(lock_);
  update_average(result.ms);
  last_ = std::move(result);
  have_last_ = true;
  last_attached_ = true;
  return boxes;
}

FrameBoxes InferenceScheduler::latest() {
  std::lock_guard<std::mutex> lock(lock_);
  FrameBoxes boxes;
  if (have_last_) {
    boxes.has_result = true;
    boxes.result = last_;
    boxes.fresh = !last_attached_;
    last_attached_ = true;
  }
  return boxes;
}

void InferenceScheduler::submit(Job job) {
  Job replaced;  // destroyed after the lock is released: it may release a frame
  {
    std::lock_guard<std::mutex> lock(lock_);
    if (stopping_ || !worker_.joinable()) return;
    replaced = std::exchange(pending_, std::move(job));
  }
  cv_.notify_one();
}

std::string InferenceScheduler::error() const {
  std::lock_guard<std::mutex> lock(lock_);
  return error_;
}

void InferenceScheduler::flush() {
  Job dropped;
  std::lock_guard<std::mutex> lock(lock_);
  dropped = std::exchange(pending_, nullptr);
  ++generation_;
  have_last_ = false;
  last_attached_ = false;
  last_ = InferenceResult{};
  frame_count_ = 0;
  // `dropped`, declared before the lock_guard, is destroyed after the unlock.
}

void InferenceScheduler::stop() {
  {
    std::lock_guard<std::mutex> lock(lock_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  Job dropped;
  std::lock_guard<std::mutex> lock(lock_);
  dropped = std::exchange(pending_, nullptr);
}

double InferenceScheduler::inference_ms() const {
  std::lock_guard<std::mutex> lock(lock_);
  return inference_ms_;
}

void InferenceScheduler::set_inference_ms(double ms) {
  std::lock_guard<std::mutex> lock(lock_);
  inference_ms_ = ms;
  reported_ms_ = ms;
}

bool InferenceScheduler::latency_report_due() {
  std::lock_guard<std::mutex> lock(lock_);
  if (inference_ms_ > 1.25 * reported_ms_ || inference_ms_ < 0.75 * reported_ms_) {
    reported_ms_ = inference_ms_;
    return true;
  }
  return false;
}

double InferenceScheduler::report_latency_ms() {
  std::lock_guard<std::mutex> lock(lock_);
  reported_ms_ = inference_ms_;
  return inference_ms_;
}

void InferenceScheduler::update_average(double ms) {
  inference_ms_ = inference_ms_ == 0 ? ms : 0.9 * inference_ms_ + 0.1 * ms;
}

void InferenceScheduler::worker_loop() {
  for (;;) {
    Job job;
    uint64_t generation = 0;
    {
      std::unique_lock<std::mutex> lock(lock_);
      cv_.wait(lock, [&] { return stopping_ || pending_; });
      if (stopping_) return;
      job = std::exchange(pending_, nullptr);
      generation = generation_;
    }
    std::string failure;
    InferenceResult result;
    try {
      result = job();
    } catch (const std::exception& e) {
      failure = std::string("inference failed: ") + e.what();
    } catch (...) {
      failure = "inference failed: unknown exception";
    }
    job = nullptr;  // releases the frame before the lock is taken
    std::lock_guard<std::mutex> lock(lock_);
    if (!failure.empty()) {
      if (error_.empty()) error_ = failure;
    } else if (generation == generation_) {  // not from before a flush
      update_average(result.ms);
      last_ = std::move(result);
      have_last_ = true;
      last_attached_ = false;
    }
  }
}

}  // namespace autoassign
