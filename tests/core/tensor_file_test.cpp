// SPDX-License-Identifier: MIT
// The tensor file container (safetensors' layout): hostile headers are named errors.
#include "autoassign/core/tensor_file.h"

#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace autoassign {
namespace {

TEST(TensorFile, HostileHeadersAreNamed) {
  auto file = [](const std::string& header, size_t data_bytes) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    return out + header + std::string(data_bytes, '\0');
  };
  auto expect_msg = [](const std::string& bytes, const std::string& part) {
    try {
      parse_tensor_file(bytes);
      FAIL() << "accepted " << bytes.substr(8, 120);
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_EQ(parse_tensor_file(file(ok, 8)).tensors.size(), 1u);
  expect_msg(file(ok, 12), "belong to no tensor");
  expect_msg(file(ok, 4), "outside the data section");
  expect_msg(std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8), "exceeds");
  expect_msg(std::string("\x40\0\0\0\0\0\0\0{}", 10), "runs past the end");
  expect_msg(file("[1,2]", 0), "not a JSON object");
  expect_msg(file("{\"a\":", 0), "not valid JSON");
  expect_msg(
      file(
          R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
          8),
      "repeats the key 'a'");
  expect_msg(
      file(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
          8),
      "overlap or leave a gap");
  expect_msg(file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
             "overlap or leave a gap");
  expect_msg(file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
             "8 bytes for 3 elements");
  expect_msg(file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
             "non-negative integer");
  expect_msg(
      file(R"({"a":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}})",
           8),
      "2^40 elements");
  expect_msg(file(R"({"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", 8), "dtype 'F64'");
  expect_msg(file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8),
             "exactly dtype");
  expect_msg(file(R"({"a":{"dtype":"F32","shape":[[[2]]],"data_offsets":[0,8]}})", 8),
             "nests deeper");
  expect_msg(file(R"({"__metadata__":{"k":1}})", 0), "is not a string");
  EXPECT_EQ(parse_tensor_file(file(R"({"__metadata__":{"k":"v"}})", 0)).metadata.at("k"), "v");
}
}  // namespace
}  // namespace autoassign
