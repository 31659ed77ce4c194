// SPDX-License-Identifier: MIT
#include "autoassign/core/tensor_file.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace autoassign {
namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

// No tensor of this project comes near these; they keep every product and sum in range.
constexpr uint64_t kMaxElements = uint64_t{1} << 40;
constexpr size_t kMaxRank = 8;
constexpr size_t kMaxNameBytes = 1024;

TensorDtype parse_dtype(const std::string& name, const std::string& tensor) {
  if (name == "F32") return TensorDtype::kF32;
  if (name == "I64") return TensorDtype::kI64;
  if (name == "BF16") return TensorDtype::kBF16;
  bad("tensor '" + tensor + "': dtype '" + name + "' is not one of F32, I64, BF16");
}

uint64_t unsigned_value(const json& v, const std::string& what) {
  if (!v.is_number_unsigned()) bad(what + " must be a non-negative integer");
  return v.get<uint64_t>();
}

}  // namespace

size_t dtype_size(TensorDtype dtype) {
  switch (dtype) {
    case TensorDtype::kF32:
      return 4;
    case TensorDtype::kI64:
      return 8;
    case TensorDtype::kBF16:
      return 2;
  }
  return 0;
}

const char* dtype_name(TensorDtype dtype) {
  switch (dtype) {
    case TensorDtype::kF32:
      return "F32";
    case TensorDtype::kI64:
      return "I64";
    case TensorDtype::kBF16:
      return "BF16";
  }
  return "?";
}

int64_t TensorEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const TensorEntry* TensorFileHeader::find(const std::string& name) const {
  for (const auto& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

uint64_t tensor_header_length(const char first8[8], uint64_t file_size) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(first8[i]);
  if (n > kMaxTensorHeaderBytes) {
    bad("header length " + std::to_string(n) + " exceeds the " +
        std::to_string(kMaxTensorHeaderBytes) + "-byte limit");
  }
  if (file_size < 8 || n > file_size - 8) {
    bad("header length " + std::to_string(n) + " runs past the end of the file (" +
        std::to_string(file_size) + " bytes): truncated");
  }
  return n;
}

TensorFileHeader parse_tensor_header(std::string_view text, uint64_t file_size) {
  if (file_size < 8 + text.size()) bad("file too short for its header");
  // Duplicate keys are an error (the JSON library would keep the last silently), and nothing
  // in a header nests deeper than an entry's shape array.
  std::vector<std::set<std::string>> keys;
  auto check = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > 3) bad("header nests deeper than a tensor entry");
    if (event == json::parse_event_t::object_start) keys.emplace_back();
    if (event == json::parse_event_t::object_end && !keys.empty()) keys.pop_back();
    if (event == json::parse_event_t::key && !keys.empty() &&
        !keys.back().insert(parsed.get<std::string>()).second) {
      bad("header repeats the key '" + parsed.get<std::string>() + "'");
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text.begin(), text.end(), check);
  } catch (const json::exception& e) {
    bad(std::string("header is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) bad("header is not a JSON object");
  TensorFileHeader h;
  h.data_offset = 8 + text.size();
  h.data_size = file_size - h.data_offset;
  for (const auto& [name, entry] : j.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) bad("__metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) bad("__metadata__ '" + k + "' is not a string");
        h.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    if (name.empty() || name.size() > kMaxNameBytes) {
      bad("a tensor name is empty or longer than " + std::to_string(kMaxNameBytes) + " bytes");
    }
    if (!entry.is_object() || entry.size() != 3 || !entry.contains("dtype") ||
        !entry.contains("shape") || !entry.contains("data_offsets")) {
      bad("tensor '" + name + "': entry must hold exactly dtype, shape and data_offsets");
    }
    TensorEntry t;
    t.name = name;
    if (!entry["dtype"].is_string()) bad("tensor '" + name + "': dtype is not a string");
    t.dtype = parse_dtype(entry["dtype"].get<std::string>(), name);
    const json& shape = entry["shape"];
    if (!shape.is_array() || shape.size() > kMaxRank) {
      bad("tensor '" + name + "': shape must be an array of at most " + std::to_string(kMaxRank) +
          " dimensions");
    }
    uint64_t numel = 1;
    for (const auto& d : shape) {
      const uint64_t v = unsigned_value(d, "tensor '" + name + "': a dimension");
      if (v > kMaxElements || (v > 0 && numel > kMaxElements / v)) {
        bad("tensor '" + name + "': more than 2^40 elements");
      }
      numel *= v;
      t.shape.push_back(static_cast<int64_t>(v));
    }
    const json& off = entry["data_offsets"];
    if (!off.is_array() || off.size() != 2) {
      bad("tensor '" + name + "': data_offsets must be [begin, end]");
    }
    t.begin = unsigned_value(off[0], "tensor '" + name + "': data_offsets begin");
    t.end = unsigned_value(off[1], "tensor '" + name + "': data_offsets end");
    if (t.begin > t.end || t.end > h.data_size) {
      bad("tensor '" + name + "': bytes [" + std::to_string(t.begin) + ", " +
          std::to_string(t.end) + ") lie outside the data section (" + std::to_string(h.data_size) +
          " bytes)");
    }
    if (t.end - t.begin != numel * dtype_size(t.dtype)) {
      bad("tensor '" + name + "': " + std::to_string(t.end - t.begin) + " bytes for " +
          std::to_string(numel) + " elements of " + dtype_name(t.dtype));
    }
    h.tensors.push_back(std::move(t));
  }
  // The byte ranges tile the data section exactly, as safetensors requires: no byte belongs
  // to two tensors, and none to no tensor.
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t at = 0;
  for (const auto& t : h.tensors) {
    if (t.begin != at) {
      bad("tensor '" + t.name + "' starts at byte " + std::to_string(t.begin) + ", expected " +
          std::to_string(at) + " (ranges overlap or leave a gap)");
    }
    at = t.end;
  }
  if (at != h.data_size) {
    bad("the data section has " + std::to_string(h.data_size - at) +
        " bytes that belong to no tensor");
  }
  return h;
}

TensorFileHeader parse_tensor_file(std::string_view bytes) {
  if (bytes.size() < 8) bad("shorter than the 8-byte header length");
  const uint64_t n = tensor_header_length(bytes.data(), bytes.size());
  return parse_tensor_header(bytes.substr(8, n), bytes.size());
}

std::string tensor_file_prefix(const std::map<std::string, std::string>& metadata,
                               std::vector<TensorEntry>& entries) {
  json j = json::object();
  if (!metadata.empty()) j["__metadata__"] = metadata;
  uint64_t at = 0;
  for (auto& e : entries) {
    e.begin = at;
    e.end = at + static_cast<uint64_t>(e.numel()) * dtype_size(e.dtype);
    at = e.end;
    j[e.name] = {
        {"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
  }
  std::string header = j.dump();
  header.append((8 - (8 + header.size()) % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header;
}

}  // namespace autoassign
