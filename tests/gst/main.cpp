// SPDX-License-Identifier: MIT
// The gst suite's main: GStreamer initialised once, the plugin registered statically (no
// registry, no scanner), then every *_test.cpp of this folder.
#include <gst/gst.h>
#include <gtest/gtest.h>

#include "plugin.h"

int main(int argc, char** argv) {
  gst_init(&argc, &argv);
  autoassign_gst_register_static();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
