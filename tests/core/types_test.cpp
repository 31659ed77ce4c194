// SPDX-License-Identifier: MIT
// What every front end does with untrusted input: WxH sizes, host:port addresses, UTF-8
// cleaning, ImageView bounds.
#include "autoassign/core/types.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "autoassign/infer/preprocess.h"

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

TEST(ParseHostPort, SplitsHostAndPortOrRefuses) {
  std::string host;
  int port = 0;
  struct Case {
    const char* text;
    const char* host;
    int port;
  };
  for (const Case& c : {Case{"127.0.0.1:1883", "127.0.0.1", 1883}, Case{"broker", "broker", 77},
                        Case{"broker.lan:0", "broker.lan", 0}, Case{"h:65535", "h", 65535},
                        Case{"[::1]:8080", "::1", 8080}, Case{"[fe80::1]", "fe80::1", 77}}) {
    ASSERT_TRUE(parse_host_port(c.text, 77, &host, &port)) << c.text;
    EXPECT_EQ(host, c.host) << c.text;
    EXPECT_EQ(port, c.port) << c.text;
  }
  host = "kept";
  port = 5;
  for (const char* bad :
       {"", ":1883", "host:", "host:65536", "host:123456", "host:-1", "host:+80", "host:8 0",
        "host:0x50", "::1", "fe80::1:80", "[::1", "[]:80", "[::1]80", "[::1]:", "[::1]:http"}) {
    EXPECT_FALSE(parse_host_port(bad, 77, &host, &port)) << bad;
  }
  EXPECT_EQ(host, "kept");  // untouched on failure
  EXPECT_EQ(port, 5);
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

// A view whose stride x rows overruns the buffer it came from is refused before any pixel is
// read (a GstVideoMeta from another element can claim anything).
TEST(RedactCredentials, HidesUserInformationOnly) {
  EXPECT_EQ(redact_credentials("rtsp://admin:s3cret@10.0.0.7:554/stream1"),
            "rtsp://***@10.0.0.7:554/stream1");
  EXPECT_EQ(redact_credentials("rtsp://10.0.0.7/live?user=a@b"), "rtsp://10.0.0.7/live?user=a@b");
  EXPECT_EQ(redact_credentials("Could not open resource rtsp://u:p@cam/x for reading; http://h/a"),
            "Could not open resource rtsp://***@cam/x for reading; http://h/a");
  EXPECT_EQ(redact_credentials("two rtsp://a:b@x and rtsps://c@y"),
            "two rtsp://***@x and rtsps://***@y");
  EXPECT_EQ(redact_credentials("rtsp://p@ss:w@rd@host/s"), "rtsp://***@host/s");  // last '@'
  EXPECT_EQ(redact_credentials("/dev/video0"), "/dev/video0");
  EXPECT_EQ(redact_credentials("test"), "test");
  EXPECT_EQ(redact_credentials("rtsp://"), "rtsp://");
}

TEST(ImageViewBounds, PlanesMustFitTheirKnownSizes) {
  std::vector<std::uint8_t> buf(64 * 48 * 3);
  auto v = ImageView::packed(PixelFormat::kBGR, buf.data(), 64, 48);
  v.sizes[0] = buf.size();
  EXPECT_NO_THROW(v.validate());  // exactly fits: 47 x 192 + 192 bytes
  v.sizes[0] = buf.size() - 1;
  try {
    v.validate();
    FAIL() << "accepted a plane one byte too large for its buffer";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("plane 0 needs 9216 bytes"), std::string::npos)
        << e.what();
  }
  // NV12: the UV plane has (48 + 1) / 2 = 24 rows of 64 bytes.
  std::vector<std::uint8_t> y(64 * 48), uv(64 * 24);
  auto n = ImageView::nv12(y.data(), 64, uv.data(), 64, 64, 48);
  n.sizes[0] = y.size();
  n.sizes[1] = uv.size();
  EXPECT_NO_THROW(n.validate());
  n.sizes[1] = uv.size() - 64;
  EXPECT_THROW(n.validate(), std::invalid_argument);
  // Sides beyond 65536 (int overflow territory for stride x height) are refused outright.
  auto huge = ImageView::packed(PixelFormat::kGRAY8, buf.data(), 70000, 1, 70000);
  EXPECT_THROW(huge.validate(), std::invalid_argument);
}

// The colour matrix follows the frame's colorimetry. A flat colour encoded by hand with the
// BT.709 (and, full range, BT.601) forward equations must come back as that colour; read as
// BT.601 limited range, as every frame used to be, BT.709 orange is off by over 10 levels.
TEST(ImageViewColour, Bt709AndFullRangeDecodeToTheEncodedColour) {
  const double r = 230, g = 120, b = 40;  // an orange: strong chroma, where matrices differ
  struct Case {
    YuvMatrix matrix;
    bool full;
    double kr, kb;
  };
  for (const auto& c : std::vector<Case>{{YuvMatrix::kBT709, false, 0.2126, 0.0722},
                                         {YuvMatrix::kBT709, true, 0.2126, 0.0722},
                                         {YuvMatrix::kBT601, true, 0.299, 0.114}}) {
    // Forward: E'Y = Kr R + Kg G + Kb B; Cb = (B - Y) / (2 (1 - Kb)); Cr = (R - Y) / (2 (1 - Kr)).
    const double y = c.kr * r + (1 - c.kr - c.kb) * g + c.kb * b;
    const double cb = (b - y) / (2 * (1 - c.kb)), cr = (r - y) / (2 * (1 - c.kr));
    const double ys = c.full ? 1.0 : 219.0 / 255.0, cs = c.full ? 1.0 : 224.0 / 255.0;
    const auto q = [](double v) { return static_cast<std::uint8_t>(std::lround(v)); };
    const int w = 16, h = 8;
    std::vector<std::uint8_t> yp(w * h, q((c.full ? 0 : 16) + ys * y)), uvp(w * h / 2);
    for (size_t i = 0; i < uvp.size(); i += 2) {
      uvp[i] = q(128 + cs * cb);
      uvp[i + 1] = q(128 + cs * cr);
    }
    auto view = ImageView::nv12(yp.data(), w, uvp.data(), w, w, h);
    view.matrix = c.matrix;
    view.full_range = c.full;
    InputConfig in;
    in.channel_order = "RGB";
    const auto rgb = Preprocessor(in).resize_to_u8(view, w, h).to(torch::kInt);
    EXPECT_NEAR(rgb[4][8][0].item<int>(), r, 2.0);
    EXPECT_NEAR(rgb[4][8][1].item<int>(), g, 2.0);
    EXPECT_NEAR(rgb[4][8][2].item<int>(), b, 2.0);
    if (c.matrix == YuvMatrix::kBT709 && !c.full) {
      view.matrix = YuvMatrix::kBT601;  // the old behaviour: visibly wrong
      const auto wrong = Preprocessor(in).resize_to_u8(view, w, h).to(torch::kInt);
      EXPECT_GT(std::abs(wrong[4][8][1].item<int>() - g) + std::abs(wrong[4][8][0].item<int>() - r),
                10);
    }
  }
}

}  // namespace
}  // namespace autoassign
