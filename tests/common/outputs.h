// SPDX-License-Identifier: MIT
// Comparing two forward passes of the same network (folded vs unfolded, NHWC vs NCHW).
#pragma once

#include <gtest/gtest.h>

#include "autoassign/infer/modeling/head.h"

namespace autoassign::testing {

/// Every level's logits within 1e-4 and distances within 1e-4 + 1e-3 relative (pixels).
inline void expect_outputs_close(const HeadOutput& a, const HeadOutput& b) {
  ASSERT_EQ(a.cls_logits.size(), b.cls_logits.size());
  for (size_t l = 0; l < a.cls_logits.size(); ++l) {
    EXPECT_TRUE(torch::allclose(a.cls_logits[l], b.cls_logits[l], 1e-4, 1e-4)) << "level " << l;
    EXPECT_TRUE(torch::allclose(a.obj_logits[l], b.obj_logits[l], 1e-4, 1e-4)) << "level " << l;
    EXPECT_TRUE(torch::allclose(a.distances[l], b.distances[l], 1e-4, 1e-3)) << "level " << l;
  }
}

}  // namespace autoassign::testing
