// SPDX-License-Identifier: MIT
// When a stream's frames are inferred on, and which boxes each frame carries: the logic of the
// autoassigndetect element's two modes, without GStreamer, so it is tested directly (and under
// ThreadSanitizer) with jobs that need no model.
//  - Synchronous: frame n is inferred on when n % inference_interval == 0; the frames between
//    carry the last result again (repeat_metadata) or nothing.
//  - Drop-when-busy: every frame carries the newest finished result at once; the frame itself is
//    handed to one worker thread as a job that replaces a job not yet started, so the stream never
//    waits for the model and the model always works on the newest frame.
// Both keep an exponential average of the inference time (what a latency query reports) and
// restart on flush(): a seek's frames never carry boxes from before it.
// Torch-free.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "autoassign/core/types.h"

namespace autoassign {

/// Detections of one inference, boxes normalised by the frame size (they survive a
/// resolution change), with the timestamp of the frame they were computed on.
struct InferenceResult {
  std::vector<Detection> detections;  ///< in the pixels of the frame they were found on
  int width = 0, height = 0;          ///< that frame's size
  int64_t pts = -1;                   ///< the source frame's timestamp (ns); -1 = none
  double ms = 0;                      ///< how long the model took
};

/// What a frame carries: the result to attach (if any) and whether it is new (computed on this
/// frame, or the first frame to carry a drop-when-busy result): trackers update on fresh ones.
struct FrameBoxes {
  bool has_result = false;
  InferenceResult result;
  bool fresh = false;
};

class InferenceScheduler {
 public:
  struct Options {
    /// Fixed for the scheduler's life (the worker exists or not); the synchronous mode's
    /// inference_interval and repeat_metadata are per call, so a property change applies at once.
    bool drop_when_busy = false;
  };
  /// The worker's job: runs the model on the frame it captured (and releases the frame when
  /// destroyed). Throwing is an inference failure, reported by error().
  using Job = std::function<InferenceResult()>;

  /// In drop-when-busy mode a worker thread starts here and stops in the destructor / stop().
  explicit InferenceScheduler(const Options& options);
  ~InferenceScheduler();
  InferenceScheduler(const InferenceScheduler&) = delete;
  InferenceScheduler& operator=(const InferenceScheduler&) = delete;

  const Options& options() const { return options_; }

  // Synchronous mode (drop_when_busy false), from the streaming thread.
  /// Counts a frame; true when this one is inferred on (frame n with n % interval == 0;
  /// an interval of 0 counts as 1).
  bool next_frame_infers(unsigned inference_interval);
  /// The boxes a frame that is not inferred on carries: the last result with repeat_metadata,
  /// else none.
  FrameBoxes repeated(bool repeat_metadata) const;
  /// Stores the result inferred on the current frame; returns what that frame carries.
  FrameBoxes record(InferenceResult result);

  // Drop-when-busy mode.
  /// The boxes this frame carries: the newest finished result, fresh on its first use.
  FrameBoxes latest();
  /// Hands the newest frame to the worker, replacing (destroying) a job it has not started.
  void submit(Job job);
  /// The first failure of a job ("" if none); the streaming thread turns it into an error.
  std::string error() const;

  /// Both modes: a flush. The pending job is dropped, a job running now has its result thrown
  /// away, the last result is forgotten and frames are counted anew.
  void flush();
  /// Stops the worker (joining it; a running job finishes first) and drops the pending job.
  void stop();

  /// Exponential average of the inference time (0.9 old + 0.1 new; the first sets it).
  double inference_ms() const;
  /// Sets the average (e.g. from a warm-up run before the first frame).
  void set_inference_ms(double ms);
  /// True when the average has left [0.75, 1.25] x the figure last reported; that figure is
  /// then taken as reported (the caller asks the pipeline to query the latency again).
  bool latency_report_due();
  /// What a latency query answers now; remembers it as reported.
  double report_latency_ms();

 private:
  void worker_loop();
  void update_average(double ms);

  const Options options_;
  mutable std::mutex lock_;  // guards everything below
  std::condition_variable cv_;
  uint64_t frame_count_ = 0;
  bool have_last_ = false;
  bool last_attached_ = false;
  InferenceResult last_;
  Job pending_;
  bool stopping_ = false;
  uint64_t generation_ = 0;  // incremented by flush()
  std::string error_;
  double inference_ms_ = 0;
  double reported_ms_ = 0;
  std::thread worker_;
};

}  // namespace autoassign
