// SPDX-License-Identifier: MIT
// The text helpers every front end uses on untrusted input: WxH sizes and UTF-8 cleaning.
#include <gtest/gtest.h>

#include "autoassign/types.h"

namespace autoassign {
namespace {

TEST(ParseSize, AcceptsOnlyDigitsXDigits) {
  int w = 0, h = 0;
  EXPECT_TRUE(parse_size("1280x768", &w, &h));
  EXPECT_EQ(w, 1280);
  EXPECT_EQ(h, 768);
  EXPECT_TRUE(parse_size("99999x1", &w, &h));
  EXPECT_EQ(w, 99999);
  w = h = 7;
  // Signs, spaces, zero, overflow (sscanf's %d was undefined there), missing or extra parts.
  for (const char* bad : {"", "x", "640", "640x", "x480", "0x480", "640x0", "-640x480", "+640x480",
                          " 640x480", "640x480 ", "640X480", "640x480x3", "100000x1",
                          "99999999999999999999x1", "640,480", "6 40x480"}) {
    EXPECT_FALSE(parse_size(bad, &w, &h)) << bad;
  }
  EXPECT_EQ(w, 7);  // untouched on failure
  EXPECT_EQ(h, 7);
}

TEST(SanitizeUtf8, KeepsValidTextReplacesEachBadSequence) {
  const std::string fffd = "\xef\xbf\xbd";
  bool changed = true;
  // Valid: ASCII, 2-, 3- and 4-byte forms (é, €, U+1F600), and the largest code point.
  const std::string good = "face \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf";
  EXPECT_EQ(sanitize_utf8(good, &changed), good);
  EXPECT_FALSE(changed);
  struct Case {
    std::string in, out;
  };
  for (const auto& c : std::vector<Case>{
           {"a\xff"
            "b",
            "a" + fffd + "b"},  // never a UTF-8 byte
           {"a\x80"
            "b",
            "a" + fffd + "b"},                               // stray continuation
           {"\xc3", fffd},                                   // truncated at the end
           {"\xc3(", fffd + "("},                            // lead without continuation
           {"\xc0\xaf", fffd + fffd},                        // overlong '/'
           {"\xe0\x80\xaf", fffd + fffd + fffd},             // overlong, 3 bytes
           {"\xed\xa0\x80", fffd + fffd + fffd},             // surrogate U+D800
           {"\xf4\x90\x80\x80", fffd + fffd + fffd + fffd},  // above U+10FFFF
           {"\xe2\x82s", fffd + fffd + "s"},                 // truncated in the middle
       }) {
    EXPECT_EQ(sanitize_utf8(c.in, &changed), c.out) << c.in;
    EXPECT_TRUE(changed) << c.in;
  }
}

}  // namespace
}  // namespace autoassign
