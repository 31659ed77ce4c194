// SPDX-License-Identifier: MIT
// autoassign/core/files.h against real file system objects: FIFOs, devices, directories,
// symlink loops, /proc files whose size on disk is 0, and the cap at exactly its byte.
#include "autoassign/core/files.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include <gtest/gtest.h>

#include "autoassign/core/config.h"
#include "fixtures.h"

namespace autoassign {
namespace {

using Kind = FileError::Kind;

void expect_file_error(const std::function<void()>& f, Kind kind, const std::string& part) {
  try {
    f();
    FAIL() << "no error (expected '" << part << "')";
  } catch (const FileError& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(Files, ReadsUpToTheCapCountingBytes) {
  const std::string dir = testing::temp_dir();
  write(dir + "/a", std::string(1000, 'a'));
  EXPECT_EQ(read_file_capped(dir + "/a", 1000, "thing"), std::string(1000, 'a'));
  expect_file_error([&] { read_file_capped(dir + "/a", 999, "thing"); }, Kind::kTooLarge,
                    "thing '" + dir + "/a': larger than 999 bytes");
  write(dir + "/empty", "");
  EXPECT_EQ(read_file_capped(dir + "/empty", 10, "thing"), "");
  // /proc files report size 0 on disk: the cap counts what is read.
  struct stat st {};
  ASSERT_EQ(stat("/proc/self/maps", &st), 0);
  ASSERT_EQ(st.st_size, 0);
  expect_file_error([&] { read_file_capped("/proc/self/maps", 16, "thing"); }, Kind::kTooLarge,
                    "larger than 16 bytes");
}

TEST(Files, WhatIsNotARegularFileIsNamed) {
  const std::string dir = testing::temp_dir();
  const std::string fifo = dir + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  // A FIFO nobody writes: refused at once, not waited on.
  expect_file_error([&] { read_file_capped(fifo, 100, "labels file"); }, Kind::kNotRegular,
                    "labels file '" + fifo + "': is a FIFO (named pipe), not a regular file");
  expect_file_error([&] { read_file_capped("/dev/zero", 100, "x"); }, Kind::kNotRegular,
                    "is a character device");
  expect_file_error([&] { read_file_capped(dir, 100, "x"); }, Kind::kNotRegular, "is a directory");
  expect_file_error([&] { read_file_capped(dir + "/nope", 100, "x"); }, Kind::kNotFound,
                    "no such file");
  const std::string loop = dir + "/loop";
  std::filesystem::create_symlink(loop, loop);
  expect_file_error([&] { read_file_capped(loop, 100, "x"); }, Kind::kUnreadable, "symbolic links");
  Kind kind{};
  EXPECT_EQ(regular_file_problem(fifo, &kind), "is a FIFO (named pipe), not a regular file");
  EXPECT_EQ(kind, Kind::kNotRegular);
  EXPECT_EQ(regular_file_problem(dir + "/nope", &kind), "no such file");
  EXPECT_EQ(kind, Kind::kNotFound);
  write(dir + "/plain", "x");
  EXPECT_EQ(regular_file_problem(dir + "/plain"), "");
}

// Every reader of a user's labels or config file goes through the same checks (issue 26:
// labels-file=/dev/zero grew to 17 GB; a directory was "larger than 16 MB").
TEST(Files, LabelsAndConfigFilesAreCappedAndRegular) {
  const std::string dir = testing::temp_dir();
  write(dir + "/labels.txt", "face\r\nmask  \n\nhand\n");
  std::vector<std::string> warnings;
  EXPECT_EQ(read_labels_file(dir + "/labels.txt", &warnings),
            (std::vector<std::string>{"face", "mask", "hand"}));
  EXPECT_TRUE(warnings.empty());
  expect_file_error([&] { read_labels_file("/dev/zero", &warnings); }, Kind::kNotRegular,
                    "labels file '/dev/zero': is a character device");
  expect_file_error([&] { read_labels_file(dir, &warnings); }, Kind::kNotRegular, "is a directory");
  write(dir + "/big.txt", std::string(kMaxLabelsFileBytes + 1, 'a'));
  expect_file_error([&] { read_labels_file(dir + "/big.txt", &warnings); }, Kind::kTooLarge,
                    "larger than 16 MB");
  const std::string fifo = dir + "/config.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  expect_file_error([&] { ModelConfig::from_file(fifo); }, Kind::kNotRegular, "is a FIFO");
  write(dir + "/big.json", "{\"name\": \"" + std::string(kMaxConfigFileBytes, 'x') + "\"}");
  expect_file_error([&] { ModelConfig::from_file(dir + "/big.json"); }, Kind::kTooLarge,
                    "config file '" + dir + "/big.json': larger than 1 MB");
}

std::string bytes(std::initializer_list<int> v) {
  std::string s;
  for (int c : v) s += static_cast<char>(c);
  return s;
}

void expect_image_error(const std::string& file, const std::string& part) {
  try {
    read_image_header(file);
    FAIL() << "accepted (expected '" << part << "')";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

// Headers written out by hand from the formats' specifications (JPEG: ITU T.81 B.2.2; PNG:
// the IHDR chunk; BMP: BITMAPINFOHEADER), each with the case that must be refused.
TEST(ImageHeader, SizesFromHandWrittenHeadersAndTruncationsRefused) {
  // JPEG: SOI, an APP0 segment of length 4, SOF0 (length 11, precision 8, height 480 =
  // 0x01E0, width 640 = 0x0280), some data, EOI.
  const std::string jpeg =
      bytes({0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x4A, 0x46, 0xFF, 0xC0, 0x00, 0x0B, 0x08,
             0x01, 0xE0, 0x02, 0x80, 0x01, 0x01, 0x11, 0x00, 0x12, 0x34, 0xFF, 0xD9});
  auto h = read_image_header(jpeg);
  EXPECT_EQ(h.format, "jpeg");
  EXPECT_EQ(h.width, 640);
  EXPECT_EQ(h.height, 480);
  expect_image_error(jpeg.substr(0, jpeg.size() - 2), "truncated JPEG (no end-of-image marker)");
  expect_image_error(jpeg.substr(0, 12), "truncated JPEG (in its frame header)");
  expect_image_error(jpeg.substr(0, 6), "truncated JPEG (no frame header)");
  // PNG: signature, IHDR (13 bytes: 60000 x 60000, depth 8, colour 2), IEND at the end.
  const std::string sig = bytes({0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A});
  const std::string ihdr = bytes({0, 0,    0,    13, 'I', 'H', 'D', 'R', 0, 0, 0x02, 0x80, 0,
                                  0, 0x01, 0xE0, 8,  2,   0,   0,   0,   1, 2, 3,    4});
  const std::string iend = bytes({0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82});
  h = read_image_header(sig + ihdr + iend);
  EXPECT_EQ(h.format, "png");
  EXPECT_EQ(h.width, 640);
  EXPECT_EQ(h.height, 480);
  expect_image_error(sig + ihdr, "truncated PNG (no IEND chunk at the end)");
  std::string huge = ihdr;
  huge[10] = static_cast<char>(0xEA), huge[11] = 0x60, huge[14] = static_cast<char>(0xEA),
  huge[15] = 0x60;  // 60000 x 60000
  expect_image_error(sig + huge + iend, "png of 60000x60000, above the limit of 100 megapixels");
  // Sides whose product overflows 64 bits (found by the fuzz target): refused, no UB.
  std::string giant = ihdr;
  for (int k = 8; k < 16; ++k) giant[k] = static_cast<char>(0xE4);
  expect_image_error(sig + giant + iend, "png of 3840206052x3840206052, above the limit");
  // BMP: "BM", file size 30 (little-endian), reserved, offset, header size, width 3, height -2
  // (top-down).
  const std::string bmp = bytes({'B', 'M', 30, 0, 0, 0, 0, 0,    0,    0,    26,   0, 0, 0, 12,
                                 0,   0,   0,  3, 0, 0, 0, 0xFE, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0});
  h = read_image_header(bmp);
  EXPECT_EQ(h.format, "bmp");
  EXPECT_EQ(h.width, 3);
  EXPECT_EQ(h.height, 2);
  expect_image_error(bmp.substr(0, 28), "truncated BMP");
  expect_image_error("", "empty file");
  expect_image_error("GIF89a......", "not a JPEG, PNG or BMP file");
  expect_image_error(sig + bytes({0, 0, 0, 13, 'I', 'H', 'D', 'R', 0, 0, 0, 0, 0,
                                  0, 0, 1, 8,  2,   0,   0,   0,   1, 2, 3, 4}) +
                         iend,
                     "png header states a size of 0x1");
}

}  // namespace
}  // namespace autoassign
