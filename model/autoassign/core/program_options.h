// SPDX-License-Identifier: MIT
// The options that several programs share (the autoassign tool's subcommands, the pipeline
// programs, the trainer), written once: flag, value name and help. Each program registers
// them from here, so `--threads 0` means the same and reads the same everywhere.
#pragma once

namespace autoassign {

struct ProgramOption {
  const char* flag;   ///< "--threads"
  const char* value;  ///< what the value is, for usage lines: "N"
  const char* help;
};

inline constexpr ProgramOption kModelOption{
    "--model", "FILE", "model file (as autoassign init, train, import or tune write them)"};
inline constexpr ProgramOption kDeviceOption{"--device", "D", "cpu, cuda or cuda:N"};
inline constexpr ProgramOption kThreadsOption{"--threads", "N",
                                              "LibTorch threads (0 = one per core)"};
inline constexpr ProgramOption kPrecisionOption{
    "--precision", "P",
    "network arithmetic: auto (bf16 on CPUs with AMX or AVX512-BF16, fp32 elsewhere), fp32, "
    "bf16, fp16 (CUDA); box decoding, scores and NMS stay fp32"};
inline constexpr ProgramOption kLayoutOption{
    "--layout", "L",
    "memory layout: auto (NHWC on CPUs, where oneDNN is faster; NCHW on CUDA), nchw or nhwc"};

}  // namespace autoassign
