// SPDX-License-Identifier: MIT
#include "autoassign/infer/device.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <torch/torch.h>

namespace autoassign {

torch::Device torch_device(const Device& device) {
  if (!device.is_cuda()) return torch::kCPU;
  if (!torch::cuda::is_available()) {
    throw DeviceError("device '" + device.str() +
                      "' requested, but this LibTorch has no CUDA support or no CUDA device");
  }
  const int count = static_cast<int>(torch::cuda::device_count());
  if (device.index >= count) {
    throw DeviceError("device '" + device.str() + "' requested, but only " + std::to_string(count) +
                      " CUDA device(s) are present");
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device.index));
}

bool cuda_available() { return torch::cuda::is_available(); }

CpuFeatures cpu_features() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1;
  if (!osxsave || __get_cpuid_max(0, nullptr) < 7) return f;
  // XCR0: the OS saves the x87/SSE/AVX (bits 1-2) and the AVX-512 opmask/ZMM state (5-7).
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  const bool os_avx512 = (lo & 0xE6u) == 0xE6u;
  __cpuid_count(7, 0, a, b, c, d);
  // EBX: AVX512F bit 16, DQ 17, BW 30, VL 31. EDX: AMX-BF16 bit 22 (the OS also grants AMX
  // per process; oneDNN asks for it itself).
  const bool f512 = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
  f.avx512_core = os_avx512 && f512 && dq && bw && vl;
  f.amx_bf16 = f.avx512_core && ((d >> 22) & 1) && ((lo >> 17) & 3) == 3;
  unsigned max_sub = a;
  if (max_sub >= 1) {
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512_bf16 = f.avx512_core && ((a >> 5) & 1);  // EAX bit 5
  }
#endif
  return f;
}

namespace {

// ONEDNN_MAX_CPU_ISA (or its old name DNNL_MAX_CPU_ISA) in upper case; "ALL" when unset.
std::string onednn_max_isa() {
  const char* v = std::getenv("ONEDNN_MAX_CPU_ISA");
  if (!v || !*v) v = std::getenv("DNNL_MAX_CPU_ISA");
  std::string isa = v && *v ? v : "ALL";
  std::transform(isa.begin(), isa.end(), isa.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::toupper(ch)); });
  return isa;
}

}  // namespace

bool onednn_isa_allows_bf16() {
  const std::string isa = onednn_max_isa();
  // ALL, AVX512_CORE_BF16, AVX512_CORE_AMX (and later: _FP16, AVX10_*) keep the bf16 units;
  // AVX512_CORE, AVX2, SSE41 ... leave oneDNN emulating bf16, slower than fp32.
  return isa == "ALL" || isa.find("BF16") != std::string::npos ||
         isa.find("AMX") != std::string::npos || isa.find("FP16") != std::string::npos ||
         isa.rfind("AVX10", 0) == 0;
}

std::string resolve_precision(const std::string& precision, const std::string& device) {
  const bool cpu = Device::parse(device).type == Device::Type::kCpu;
  if (precision == "fp32") return precision;
  if (precision == "auto") {
    const auto f = cpu_features();
    return cpu && (f.amx_bf16 || f.avx512_bf16) && onednn_isa_allows_bf16() ? "bf16" : "fp32";
  }
  if (precision == "fp16") {
    if (cpu) throw std::invalid_argument("precision fp16 needs a CUDA device (use bf16 on CPUs)");
    return precision;
  }
  if (precision == "bf16") {
    if (cpu && !cpu_features().avx512_core) {
      throw std::invalid_argument(
          "precision bf16 needs AVX-512 (F, BW, VL, DQ) on this CPU; it has none: use fp32");
    }
    // Capped below AVX-512, oneDNN has no bf16 convolution at all (it fails at the first one).
    const std::string isa = onednn_max_isa();
    if (cpu && isa != "ALL" && isa.rfind("AVX512", 0) != 0 && isa.rfind("AVX10", 0) != 0) {
      throw std::invalid_argument(
          "precision bf16 needs oneDNN's AVX-512 kernels, which "
          "ONEDNN_MAX_CPU_ISA=" +
          isa + " leaves out: use fp32");
    }
    return precision;
  }
  throw std::invalid_argument("precision must be auto, fp32, bf16 or fp16, got '" + precision +
                              "'");
}

int resolve_threads(int threads) {
  return threads > 0 ? threads
                     : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace autoassign
