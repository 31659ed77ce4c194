// SPDX-License-Identifier: MIT
#include "autoassign/core/torch_checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>

namespace autoassign {

namespace {

[[noreturn]] void bad(const std::string& name, const std::string& what) {
  throw std::invalid_argument(name + ": " + what);
}

uint64_t le(const std::string& b, uint64_t at, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
  return v;
}

struct ZipEntry {
  std::string name;
  uint64_t begin = 0, size = 0;
};

// The entries of a zip held in `b`: stored (uncompressed) only, which is what torch.save
// writes. Every offset and size is checked against the file.
std::vector<ZipEntry> zip_entries(const std::string& b, const std::string& name) {
  const uint64_t n = b.size();
  if (n < 22) bad(name, "too short to be a zip file");
  // End of central directory: the last signature in the final 64 KiB + 22 bytes.
  uint64_t eocd = std::numeric_limits<uint64_t>::max();
  for (uint64_t at = n - 22 + 1; at-- > (n > 65557 ? n - 65557 : 0);) {
    if (le(b, at, 4) == 0x06054b50) {
      eocd = at;
      break;
    }
  }
  if (eocd == std::numeric_limits<uint64_t>::max()) bad(name, "no zip end-of-directory record");
  uint64_t count = le(b, eocd + 10, 2), dir_size = le(b, eocd + 12, 4),
           dir_offset = le(b, eocd + 16, 4);
  if (count == 0xffff || dir_size == 0xffffffff || dir_offset == 0xffffffff) {
    // Zip64: the locator sits just before the end record.
    if (eocd < 20 || le(b, eocd - 20, 4) != 0x07064b50) bad(name, "zip64 locator missing");
    const uint64_t z64 = le(b, eocd - 20 + 8, 8);
    if (z64 > n || n - z64 < 56 || le(b, z64, 4) != 0x06064b50) bad(name, "bad zip64 record");
    count = le(b, z64 + 32, 8);
    dir_size = le(b, z64 + 40, 8);
    dir_offset = le(b, z64 + 48, 8);
  }
  if (dir_offset > n || dir_size > n - dir_offset) bad(name, "zip directory out of the file");
  if (count > 1'000'000) bad(name, "too many zip entries");
  std::vector<ZipEntry> out;
  uint64_t at = dir_offset;
  const uint64_t end = dir_offset + dir_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (end - at < 46 || le(b, at, 4) != 0x02014b50) bad(name, "bad zip directory entry");
    const uint64_t method = le(b, at + 10, 2);
    uint64_t csize = le(b, at + 20, 4), usize = le(b, at + 24, 4);
    const uint64_t name_len = le(b, at + 28, 2), extra_len = le(b, at + 30, 2),
                   comment_len = le(b, at + 32, 2);
    uint64_t local = le(b, at + 42, 4);
    if (end - at - 46 < name_len + extra_len + comment_len) bad(name, "bad zip directory entry");
    ZipEntry e;
    e.name = b.substr(at + 46, name_len);
    // Zip64 extra field: the 64-bit sizes and offset, for those set to 0xffffffff.
    for (uint64_t x = at + 46 + name_len, xe = x + extra_len; xe - x >= 4;) {
      const uint64_t id = le(b, x, 2), len = le(b, x + 2, 2);
      if (xe - x - 4 < len) bad(name, "bad zip extra field in '" + e.name + "'");
      if (id == 1) {
        uint64_t f = x + 4;
        auto take = [&](uint64_t& v) {
          if (v != 0xffffffff) return;
          if (x + 4 + len - f < 8) bad(name, "bad zip64 field in '" + e.name + "'");
          v = le(b, f, 8);
          f += 8;
        };
        take(usize);
        take(csize);
        take(local);
      }
      x += 4 + len;
    }
    if (method != 0) {
      bad(name, "zip entry '" + e.name + "' is compressed (method " + std::to_string(method) +
                    "); torch.save writes stored entries");
    }
    if (csize != usize) bad(name, "zip entry '" + e.name + "': sizes disagree");
    if (local > n || n - local < 30 || le(b, local, 4) != 0x04034b50) {
      bad(name, "zip entry '" + e.name + "': bad local header");
    }
    const uint64_t data = local + 30 + le(b, local + 26, 2) + le(b, local + 28, 2);
    if (data > n || usize > n - data) bad(name, "zip entry '" + e.name + "' runs past the file");
    e.begin = data;
    e.size = usize;
    out.push_back(std::move(e));
    at += 46 + name_len + extra_len + comment_len;
  }
  return out;
}

TorchDtype storage_dtype(const std::string& global, const std::string& name) {
  static const std::map<std::string, TorchDtype> types = {
      {"torch FloatStorage", TorchDtype::kF32}, {"torch DoubleStorage", TorchDtype::kF64},
      {"torch HalfStorage", TorchDtype::kF16},  {"torch BFloat16Storage", TorchDtype::kBF16},
      {"torch LongStorage", TorchDtype::kI64},  {"torch IntStorage", TorchDtype::kI32},
      {"torch ShortStorage", TorchDtype::kI16}, {"torch CharStorage", TorchDtype::kI8},
      {"torch ByteStorage", TorchDtype::kU8},   {"torch BoolStorage", TorchDtype::kBool}};
  auto it = types.find(global);
  if (it == types.end()) bad(name, "unsupported storage type '" + global + "'");
  return it->second;
}

}  // namespace

size_t torch_dtype_size(TorchDtype d) {
  switch (d) {
    case TorchDtype::kF64:
    case TorchDtype::kI64:
      return 8;
    case TorchDtype::kF32:
    case TorchDtype::kI32:
      return 4;
    case TorchDtype::kF16:
    case TorchDtype::kBF16:
    case TorchDtype::kI16:
      return 2;
    default:
      return 1;
  }
}

const char* torch_dtype_name(TorchDtype d) {
  switch (d) {
    case TorchDtype::kF32:
      return "float32";
    case TorchDtype::kF64:
      return "float64";
    case TorchDtype::kF16:
      return "float16";
    case TorchDtype::kBF16:
      return "bfloat16";
    case TorchDtype::kI64:
      return "int64";
    case TorchDtype::kI32:
      return "int32";
    case TorchDtype::kI16:
      return "int16";
    case TorchDtype::kI8:
      return "int8";
    case TorchDtype::kU8:
      return "uint8";
    case TorchDtype::kBool:
      return "bool";
  }
  return "?";
}

int64_t TorchTensorRef::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

const PickleValue* PickleValue::get(const std::string& key) const {
  if (kind != Kind::kDict) return nullptr;
  for (const auto& [k, v] : entries) {
    if (k->kind == Kind::kString && k->text == key) return v;
  }
  return nullptr;
}

const char* PickleValue::kind_name() const {
  static const char* names[] = {"None",  "bool", "int",   "float", "str",
                                "bytes", "list", "tuple", "dict",  "tensor"};
  return names[static_cast<int>(kind)];
}

// The pickle machine: a stack, marks and a memo of pointers into the checkpoint's arena (a dict
// stored in the memo and filled afterwards is the same object, as in Python).
class PickleMachine {
 public:
  PickleMachine(TorchCheckpoint& ck, std::string_view pickle) : ck_(ck), p_(pickle) {}

  const PickleValue* run() {
    for (;;) {
      const unsigned char op = byte();
      switch (op) {
        case 0x80:  // PROTO
          if (byte() > 5) fail("pickle protocol above 5");
          break;
        case 0x95:  // FRAME (protocol 4): a length, nothing to do
          take(8);
          break;
        case '}':  // EMPTY_DICT
          push(make(PickleValue::Kind::kDict));
          break;
        case ']':  // EMPTY_LIST
          push(make(PickleValue::Kind::kList));
          break;
        case ')':  // EMPTY_TUPLE
          push(make(PickleValue::Kind::kTuple));
          break;
        case '(':  // MARK
          marks_.push_back(stack_.size());
          break;
        case 'X':  // BINUNICODE
          push(string_value(static_cast<size_t>(number(4)), PickleValue::Kind::kString));
          break;
        case 0x8c:  // SHORT_BINUNICODE
          push(string_value(byte(), PickleValue::Kind::kString));
          break;
        case 'T':  // BINSTRING (Python 2 str)
          push(string_value(static_cast<size_t>(number(4)), PickleValue::Kind::kString));
          break;
        case 'U':  // SHORT_BINSTRING
          push(string_value(byte(), PickleValue::Kind::kString));
          break;
        case 'B':  // BINBYTES
          push(string_value(static_cast<size_t>(number(4)), PickleValue::Kind::kBytes));
          break;
        case 'C':  // SHORT_BINBYTES
          push(string_value(byte(), PickleValue::Kind::kBytes));
          break;
        case 'J': {  // BININT: signed 32-bit
          auto* v = make(PickleValue::Kind::kInt);
          v->integer = static_cast<int32_t>(static_cast<uint32_t>(number(4)));
          push(v);
          break;
        }
        case 'K': {  // BININT1
          auto* v = make(PickleValue::Kind::kInt);
          v->integer = byte();
          push(v);
          break;
        }
        case 'M': {  // BININT2
          auto* v = make(PickleValue::Kind::kInt);
          v->integer = static_cast<int64_t>(number(2));
          push(v);
          break;
        }
        case 0x8a: {  // LONG1: little-endian two's complement of n bytes
          const size_t n = byte();
          if (n > 8) fail("an integer wider than 64 bits");
          const std::string_view b = take(n);
          uint64_t u = 0;
          for (size_t i = n; i-- > 0;) u = (u << 8) | static_cast<unsigned char>(b[i]);
          if (n > 0 && n < 8 && (static_cast<unsigned char>(b[n - 1]) & 0x80)) {
            u |= ~uint64_t{0} << (8 * n);  // sign-extend
          }
          auto* v = make(PickleValue::Kind::kInt);
          v->integer = static_cast<int64_t>(u);
          push(v);
          break;
        }
        case 'G': {  // BINFLOAT: big-endian double
          const std::string_view b = take(8);
          uint64_t u = 0;
          for (char c : b) u = (u << 8) | static_cast<unsigned char>(c);
          auto* v = make(PickleValue::Kind::kFloat);
          std::memcpy(&v->real, &u, sizeof u);
          push(v);
          break;
        }
        case 'N':
          push(make(PickleValue::Kind::kNone));
          break;
        case 0x88:
        case 0x89: {  // NEWTRUE, NEWFALSE
          auto* v = make(PickleValue::Kind::kBool);
          v->boolean = op == 0x88;
          push(v);
          break;
        }
        case 't': {  // TUPLE
          auto* v = make(PickleValue::Kind::kTuple);
          v->items = pop_to_mark();
          push(v);
          break;
        }
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          auto* v = make(PickleValue::Kind::kTuple);
          const size_t n = op - 0x84u;
          if (stack_.size() < n + floor()) fail("stack underflow");
          v->items.assign(stack_.end() - static_cast<long>(n), stack_.end());
          stack_.resize(stack_.size() - n);
          push(v);
          break;
        }
        case 'l': {  // LIST
          auto* v = make(PickleValue::Kind::kList);
          v->items = pop_to_mark();
          push(v);
          break;
        }
        case 'd': {  // DICT
          auto* v = make(PickleValue::Kind::kDict);
          add_pairs(v, pop_to_mark());
          push(v);
          break;
        }
        case 'c': {  // GLOBAL "module\nname\n" (two reads: their order matters)
          const std::string module = line();
          push(global(module + " " + line()));
          break;
        }
        case 'R': {  // REDUCE: callable(*args)
          const PickleValue* args = pop();
          const PickleValue* callable = pop();
          push(reduce(callable, args));
          break;
        }
        case 'Q': {  // BINPERSID: a storage, ('storage', type, key, location, numel)
          push(persistent(pop()));
          break;
        }
        case 'q':  // BINPUT
          memo(byte());
          break;
        case 'r':  // LONG_BINPUT
          memo(number(4));
          break;
        case 0x94:  // MEMOIZE
          memo(memo_.size());
          break;
        case 'h':  // BINGET
          push(recall(byte()));
          break;
        case 'j':  // LONG_BINGET
          push(recall(number(4)));
          break;
        case 's': {  // SETITEM
          const PickleValue* value = pop();
          const PickleValue* key = pop();
          add_pairs(mutable_top(PickleValue::Kind::kDict), {key, value});
          break;
        }
        case 'u': {  // SETITEMS
          auto items = pop_to_mark();
          add_pairs(mutable_top(PickleValue::Kind::kDict), items);
          break;
        }
        case 'a': {  // APPEND
          const PickleValue* value = pop();
          mutable_top(PickleValue::Kind::kList)->items.push_back(value);
          break;
        }
        case 'e': {  // APPENDS
          auto items = pop_to_mark();
          auto* list = mutable_top(PickleValue::Kind::kList);
          list->items.insert(list->items.end(), items.begin(), items.end());
          break;
        }
        case 'b': {  // BUILD: an OrderedDict's attributes (state_dict's _metadata): dropped
          const PickleValue* state = pop();
          (void)state;
          if (stack_.size() <= floor() || stack_.back()->kind != PickleValue::Kind::kDict) {
            fail("BUILD (setting attributes) on something that is not an OrderedDict");
          }
          break;
        }
        case '.':  // STOP
          if (stack_.size() != 1 || !marks_.empty()) fail("the stack is not one value at STOP");
          return stack_.back();
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          fail(std::string("pickle opcode ") + hex + " is not data this reader accepts");
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    bad(ck_.name_, "data.pkl at byte " + std::to_string(pos_) + ": " + what);
  }
  unsigned char byte() {
    if (pos_ >= p_.size()) fail("ends before STOP");
    return static_cast<unsigned char>(p_[pos_++]);
  }
  std::string_view take(size_t n) {
    if (p_.size() - pos_ < n) fail("ends inside a value");
    const std::string_view s = p_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  uint64_t number(int n) {
    const std::string_view b = take(static_cast<size_t>(n));
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[i]);
    return v;
  }
  std::string line() {
    const size_t nl = p_.find('\n', pos_);
    if (nl == std::string_view::npos || nl - pos_ > 256) fail("bad GLOBAL name");
    std::string s(p_.substr(pos_, nl - pos_));
    pos_ = nl + 1;
    return s;
  }
  PickleValue* make(PickleValue::Kind kind) {
    if (ck_.arena_.size() >= kMaxPickleValues) fail("more values than a checkpoint holds");
    ck_.arena_.push_back(std::make_unique<PickleValue>());
    ck_.arena_.back()->kind = kind;
    return ck_.arena_.back().get();
  }
  PickleValue* string_value(size_t n, PickleValue::Kind kind) {
    auto* v = make(kind);
    v->text = std::string(take(n));
    return v;
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(const PickleValue* v) { stack_.push_back(v); }
  const PickleValue* pop() {
    if (stack_.size() <= floor()) fail("stack underflow");
    const PickleValue* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  std::vector<const PickleValue*> pop_to_mark() {
    if (marks_.empty()) fail("no MARK");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<const PickleValue*> items(stack_.begin() + static_cast<long>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  // Values the machine created are owned by the arena; the ones it mutates (dicts and lists
  // filled by SETITEM(S) and APPEND(S)) are found through it.
  PickleValue* mutable_top(PickleValue::Kind kind) {
    if (stack_.size() <= floor() || stack_.back()->kind != kind) {
      fail(std::string("expected a ") + (kind == PickleValue::Kind::kDict ? "dict" : "list") +
           " on the stack");
    }
    return const_cast<PickleValue*>(stack_.back());
  }
  void add_pairs(PickleValue* dict, const std::vector<const PickleValue*>& kv) {
    if (kv.size() % 2) fail("a dict item without a value");
    for (size_t i = 0; i < kv.size(); i += 2) {
      const auto k = kv[i]->kind;
      if (k != PickleValue::Kind::kString && k != PickleValue::Kind::kInt &&
          k != PickleValue::Kind::kTuple && k != PickleValue::Kind::kNone &&
          k != PickleValue::Kind::kBool && k != PickleValue::Kind::kFloat) {
        fail(std::string("a dict key of type ") + kv[i]->kind_name());
      }
      dict->entries.emplace_back(kv[i], kv[i + 1]);
    }
  }
  void memo(uint64_t index) {
    if (stack_.empty()) fail("memo of an empty stack");
    if (index > kMaxPickleValues) fail("memo index out of range");
    if (memo_.size() <= index) memo_.resize(index + 1, nullptr);
    memo_[index] = stack_.back();
  }
  const PickleValue* recall(uint64_t index) {
    if (index >= memo_.size() || !memo_[index]) fail("memo index never stored");
    return memo_[index];
  }
  // A global is only a name here: it becomes a marker the next REDUCE or BINPERSID knows.
  const PickleValue* global(const std::string& name) {
    static const std::set<std::string> known = {"collections OrderedDict",
                                                "torch._utils _rebuild_tensor_v2",
                                                "torch._utils _rebuild_parameter"};
    if (!known.count(name) && name.rfind("torch ", 0) != 0) {
      fail("refers to '" + name + "', which is not data (only dicts, lists, numbers, strings " +
           "and tensors are read)");
    }
    if (name.rfind("torch ", 0) == 0 && name.find("Storage") == std::string::npos) {
      fail("refers to '" + name + "', which is not data");
    }
    auto* v = make(PickleValue::Kind::kString);
    v->text = name;
    globals_.insert(v);
    return v;
  }
  bool is_global(const PickleValue* v, const char* name) const {
    return globals_.count(v) && v->text == name;
  }
  int64_t int_item(const PickleValue* t, size_t i, const char* what) {
    if (i >= t->items.size() || t->items[i]->kind != PickleValue::Kind::kInt) {
      fail(std::string(what) + " is not an integer");
    }
    return t->items[i]->integer;
  }
  const PickleValue* persistent(const PickleValue* pid) {
    if (pid->kind != PickleValue::Kind::kTuple || pid->items.size() != 5 ||
        pid->items[0]->kind != PickleValue::Kind::kString || pid->items[0]->text != "storage" ||
        !globals_.count(pid->items[1]) || pid->items[2]->kind != PickleValue::Kind::kString) {
      fail("a persistent id that is not a ('storage', type, key, location, numel) tuple");
    }
    TorchTensorRef t;
    t.dtype = storage_dtype(pid->items[1]->text, ck_.name_);
    t.storage = pid->items[2]->text;
    t.storage_numel = int_item(pid, 4, "a storage's element count");
    if (t.storage_numel < 0) fail("a negative storage size");
    const auto* record = ck_.record(t.storage);
    if (!record) fail("storage '" + t.storage + "' has no data/" + t.storage + " record");
    const uint64_t need = static_cast<uint64_t>(t.storage_numel) * torch_dtype_size(t.dtype);
    if (static_cast<uint64_t>(t.storage_numel) > (uint64_t{1} << 40) || record->size < need) {
      fail("storage '" + t.storage + "' holds " + std::to_string(record->size) +
           " bytes, fewer than " + std::to_string(t.storage_numel) + " elements of " +
           torch_dtype_name(t.dtype));
    }
    auto* v = make(PickleValue::Kind::kTensor);  // a whole storage, until rebuilt as a view
    v->tensor = t;
    storages_.insert(v);
    return v;
  }
  std::vector<int64_t> ints(const PickleValue* t, const char* what) {
    if (t->kind != PickleValue::Kind::kTuple) fail(std::string(what) + " is not a tuple");
    if (t->items.size() > kMaxTensorDims) fail(std::string(what) + " has too many dimensions");
    std::vector<int64_t> out;
    for (size_t i = 0; i < t->items.size(); ++i) out.push_back(int_item(t, i, what));
    return out;
  }
  const PickleValue* reduce(const PickleValue* callable, const PickleValue* args) {
    if (args->kind != PickleValue::Kind::kTuple) fail("REDUCE arguments are not a tuple");
    if (is_global(callable, "collections OrderedDict")) {
      auto* d = make(PickleValue::Kind::kDict);
      if (!args->items.empty()) fail("OrderedDict built from arguments");
      return d;
    }
    if (is_global(callable, "torch._utils _rebuild_parameter")) {
      if (args->items.size() != 3 || args->items[0]->kind != PickleValue::Kind::kTensor) {
        fail("_rebuild_parameter without a tensor");
      }
      return args->items[0];
    }
    if (is_global(callable, "torch._utils _rebuild_tensor_v2")) {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if (args->items.size() < 6 || !storages_.count(args->items[0])) {
        fail("_rebuild_tensor_v2 without a storage");
      }
      auto* v = make(PickleValue::Kind::kTensor);
      v->tensor = args->items[0]->tensor;
      v->tensor.offset = int_item(args, 1, "a tensor's storage offset");
      v->tensor.shape = ints(args->items[2], "a tensor's size");
      v->tensor.stride = ints(args->items[3], "a tensor's stride");
      check_view(v->tensor);
      return v;
    }
    fail(std::string("REDUCE of a ") + callable->kind_name() +
         (globals_.count(callable) ? " '" + callable->text + "'" : std::string()) +
         ", which is not data");
  }
  // The view lies inside its storage: offset + sum((size - 1) x stride) < numel.
  void check_view(const TorchTensorRef& t) {
    if (t.shape.size() != t.stride.size()) fail("a tensor's size and stride differ in length");
    if (t.offset < 0) fail("a negative storage offset");
    int64_t last = t.offset;
    bool empty = false;
    for (size_t i = 0; i < t.shape.size(); ++i) {
      if (t.shape[i] < 0 || t.stride[i] < 0) fail("a negative size or stride");
      if (t.shape[i] > (int64_t{1} << 40) || t.stride[i] > (int64_t{1} << 40)) {
        fail("a size or stride out of range");
      }
      if (t.shape[i] == 0) empty = true;
      if (t.shape[i] > 0) {
        const __int128 extent = static_cast<__int128>(t.shape[i] - 1) * t.stride[i];
        if (extent > (int64_t{1} << 50)) fail("a tensor view out of range");
        last += static_cast<int64_t>(extent);
      }
    }
    if (!empty && last >= t.storage_numel) {
      fail("a tensor of storage '" + t.storage + "' reaches element " + std::to_string(last) +
           " of " + std::to_string(t.storage_numel));
    }
  }

  TorchCheckpoint& ck_;
  std::string_view p_;
  size_t pos_ = 0;
  std::vector<const PickleValue*> stack_;
  std::vector<size_t> marks_;
  std::vector<const PickleValue*> memo_;
  std::set<const PickleValue*> globals_, storages_;
};

TorchCheckpoint TorchCheckpoint::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) bad(path, "cannot open");
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::streamoff>(in.tellg());
  if (size < 0) bad(path, "cannot read");
  in.seekg(0);
  std::string bytes(static_cast<size_t>(size), '\0');
  if (!in.read(bytes.data(), size)) bad(path, "cannot read");
  return parse(std::move(bytes), path);
}

TorchCheckpoint TorchCheckpoint::parse(std::string bytes, const std::string& name) {
  TorchCheckpoint ck;
  ck.name_ = name;
  ck.bytes_ = std::move(bytes);
  const std::string& b = ck.bytes_;
  if (b.size() >= 2 && static_cast<unsigned char>(b[0]) == 0x80 && b[1] <= 5) {
    bad(name,
        "a PyTorch checkpoint in the format before PyTorch 1.6 (a bare pickle). Re-save it as a "
        "zip with PyTorch 1.6 or later: python3 -c \"import torch; torch.save(torch.load('OLD', "
        "map_location='cpu'), 'NEW')\" (load only files you trust: that step runs their pickle)");
  }
  if (b.size() < 4 || b.compare(0, 4, "PK\x03\x04") != 0) {
    bad(name, "not a PyTorch checkpoint (neither a zip nor a pickle)");
  }
  const auto entries = zip_entries(b, name);
  // torch.save puts everything under one folder: ARCHIVE/data.pkl, ARCHIVE/data/N.
  std::string prefix;
  for (const auto& e : entries) {
    const size_t slash = e.name.find('/');
    if (slash != std::string::npos && e.name.substr(slash) == "/data.pkl") {
      prefix = e.name.substr(0, slash + 1);
      break;
    }
  }
  if (prefix.empty()) {
    bad(name,
        "a zip without data.pkl: not a torch.save checkpoint (a TorchScript archive? "
        "`autoassign convert` reads those)");
  }
  std::string_view pickle;
  for (const auto& e : entries) {
    if (e.name.rfind(prefix, 0) != 0) continue;
    Record r{e.name.substr(prefix.size()), e.begin, e.size};
    if (r.name == "data.pkl") pickle = std::string_view(b).substr(e.begin, e.size);
    ck.records_.push_back(std::move(r));
  }
  PickleMachine machine(ck, pickle);
  ck.root_ = machine.run();
  return ck;
}

const TorchCheckpoint::Record* TorchCheckpoint::record(const std::string& storage) const {
  const std::string name = "data/" + storage;
  for (const auto& r : records_) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

std::string_view TorchCheckpoint::tensor_bytes(const TorchTensorRef& t) const {
  const Record* r = record(t.storage);
  if (!r) bad(name_, "no storage record '" + t.storage + "'");
  const uint64_t begin = static_cast<uint64_t>(t.offset) * torch_dtype_size(t.dtype);
  if (begin > r->size) bad(name_, "tensor offset past its storage");
  return std::string_view(bytes_).substr(r->begin + begin, r->size - begin);
}

std::vector<std::pair<std::string, TorchTensorRef>> TorchCheckpoint::state_dict() const {
  const PickleValue* dict = root_;
  for (const char* key : {"state_dict", "model"}) {
    if (const PickleValue* inner = root_->get(key);
        inner && inner->kind == PickleValue::Kind::kDict) {
      dict = inner;
      break;
    }
  }
  if (dict->kind != PickleValue::Kind::kDict) {
    bad(name_, std::string("holds a ") + dict->kind_name() + ", not a state dict");
  }
  std::vector<std::pair<std::string, TorchTensorRef>> out;
  std::set<std::string> seen;
  for (const auto& [k, v] : dict->entries) {
    if (k->kind != PickleValue::Kind::kString) bad(name_, "a state dict key that is not a string");
    if (v->kind != PickleValue::Kind::kTensor) {
      bad(name_, "state dict entry '" + k->text + "' is a " + v->kind_name() + ", not a tensor");
    }
    if (!seen.insert(k->text).second) bad(name_, "state dict key '" + k->text + "' twice");
    out.emplace_back(k->text, v->tensor);
  }
  return out;
}

}  // namespace autoassign
