// SPDX-License-Identifier: MIT
// Where and how the network runs: CPU features against /proc/cpuinfo, what `auto` resolves to,
// bf16 inference against fp32.
#include "autoassign/infer/device.h"

#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>

#include "autoassign/infer/detector.h"
#include "autoassign/infer/modeling/model.h"
#include "outputs.h"

namespace autoassign {
namespace {

// The CPU features the library reads from CPUID are the ones Linux reports.
TEST(Precision, CpuFeaturesMatchProcCpuinfo) {
  std::ifstream in("/proc/cpuinfo");
  std::string line, flags;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) == 0) {
      flags = line.substr(line.find(':') + 1) + " ";
      break;
    }
  }
  if (flags.empty()) GTEST_SKIP() << "no /proc/cpuinfo flags";
  auto has = [&](const std::string& f) { return flags.find(" " + f + " ") != std::string::npos; };
  const auto f = cpu_features();
  EXPECT_EQ(f.avx512_core, has("avx512f") && has("avx512bw") && has("avx512vl") && has("avx512dq"));
  EXPECT_EQ(f.avx512_bf16, has("avx512_bf16"));
  EXPECT_EQ(f.amx_bf16, has("amx_bf16"));
  if (std::getenv("ONEDNN_MAX_CPU_ISA") || std::getenv("DNNL_MAX_CPU_ISA"))
    GTEST_SKIP() << "oneDNN's ISA is capped in this environment";
  EXPECT_EQ(resolve_precision("auto", "cpu"),
            has("amx_bf16") || has("avx512_bf16") ? "bf16" : "fp32");
  // oneDNN capped below its bf16 kernels (as a CPU without AMX / AVX512-BF16): auto is fp32.
  for (const char* isa : {"AVX512_CORE", "avx2", "SSE41"}) {
    setenv("ONEDNN_MAX_CPU_ISA", isa, 1);
    EXPECT_FALSE(onednn_isa_allows_bf16()) << isa;
    EXPECT_EQ(resolve_precision("auto", "cpu"), "fp32") << isa;
  }
  // Below AVX-512 oneDNN has no bf16 convolution: asking for bf16 is an error naming the cap.
  setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
  try {
    resolve_precision("bf16", "cpu");
    ADD_FAILURE() << "bf16 accepted under ONEDNN_MAX_CPU_ISA=AVX2";
  } catch (const std::invalid_argument& e) {
    // (A CPU without AVX-512 says so first.)
    const std::string said = f.avx512_core ? "ONEDNN_MAX_CPU_ISA=AVX2" : "AVX-512";
    EXPECT_NE(std::string(e.what()).find(said), std::string::npos) << e.what();
  }
  for (const char* isa : {"ALL", "AVX512_CORE_AMX", "avx512_core_bf16"}) {
    setenv("ONEDNN_MAX_CPU_ISA", isa, 1);
    EXPECT_TRUE(onednn_isa_allows_bf16()) << isa;
    EXPECT_EQ(resolve_precision("auto", "cpu"),
              has("amx_bf16") || has("avx512_bf16") ? "bf16" : "fp32")
        << isa;
  }
  unsetenv("ONEDNN_MAX_CPU_ISA");
  EXPECT_EQ(resolve_precision("auto", "cuda"), "fp32");
  EXPECT_EQ(resolve_precision("fp32", "cpu"), "fp32");
  EXPECT_EQ(resolve_precision("fp16", "cuda:0"), "fp16");
  EXPECT_THROW(resolve_precision("fp16", "cpu"), std::invalid_argument);
  EXPECT_THROW(resolve_precision("int8", "cpu"), std::invalid_argument);
  if (f.avx512_core) {
    EXPECT_EQ(resolve_precision("bf16", "cpu"), "bf16");
  } else {
    EXPECT_THROW(resolve_precision("bf16", "cpu"), std::invalid_argument);
  }
}

}  // namespace
}  // namespace autoassign
