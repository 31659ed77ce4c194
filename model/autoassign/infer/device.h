// SPDX-License-Identifier: MIT
// Where and how the network runs: the torch device of a device string, the CPU's bf16 units,
// what a precision request resolves to, and how many threads "0" means. One unit that the
// Detector, the trainer and the tools share. Torch-free, like detector.h, which includes it.
#pragma once

#include <string>

#include "autoassign/core/types.h"

namespace c10 {
struct Device;
}  // namespace c10

namespace autoassign {

/// The torch device for a Device; throws DeviceError when CUDA is asked for and this LibTorch
/// has none (or not that many devices).
c10::Device torch_device(const Device& device);

/// True when this LibTorch was built with CUDA and sees at least one device.
bool cuda_available();

/// The CPU's units that decide bf16 inference, from CPUID (and XGETBV: the OS must save the
/// AVX-512 state). avx512_core = AVX512F+BW+VL+DQ, what oneDNN needs for any bf16 convolution.
struct CpuFeatures {
  bool avx512_core = false;
  bool avx512_bf16 = false;
  bool amx_bf16 = false;
};
CpuFeatures cpu_features();

/// False when ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) caps oneDNN below its bf16 kernels
/// (e.g. AVX512_CORE, AVX2): oneDNN then emulates bf16, slower than fp32, so `auto` takes fp32.
bool onednn_isa_allows_bf16();

/// What `precision` resolves to on `device` ("cpu", "cuda[:N]"): "fp32", "bf16" or "fp16".
/// Throws std::invalid_argument for an unknown value, fp16 on a CPU, or bf16 on a CPU without
/// AVX-512 (LibTorch's oneDNN has no bf16 convolution there).
std::string resolve_precision(const std::string& precision, const std::string& device);

/// Intra-op threads for a `threads` option: itself when > 0, one per core for 0 (the
/// meaning every program's --threads 0 has).
int resolve_threads(int threads);

}  // namespace autoassign
