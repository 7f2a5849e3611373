// See safetensors.h.
#include "model/hf/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/bf16.h"
#include "base/status.h"
#include "base/file_util.h"
#include "model/hf/json.h"

namespace moe::hf {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100000000;  // the safetensors library's limit; docs/model.md

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::kF64, "F64", 8},       {DType::kF32, "F32", 4},
    {DType::kF16, "F16", 2},       {DType::kBF16, "BF16", 2},
    {DType::kI64, "I64", 8},       {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2},       {DType::kI8, "I8", 1},
    {DType::kU8, "U8", 1},         {DType::kBool, "BOOL", 1},
    {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kF8E5M2, "F8_E5M2", 1},
};

const DTypeEntry& Entry(DType dtype) {
  for (const auto& e : kDTypes) {
    if (e.dtype == dtype) return e;
  }
  return kDTypes[1];  // unreachable: every enumerator is listed
}

template <typename T>
T LoadLe(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

std::array<float, 256> MakeE4M3Table() {
  std::array<float, 256> t{};
  for (int b = 0; b < 256; ++b) {
    const int e = (b >> 3) & 0xF;
    const int m = b & 7;
    float v;
    if (e == 15 && m == 7) {
      v = std::numeric_limits<float>::quiet_NaN();
    } else if (e == 0) {
      v = std::ldexp(static_cast<float>(m), -9);  // subnormal: m/8 * 2^(1-7)
    } else {
      v = std::ldexp(static_cast<float>(8 + m), e - 10);  // (1 + m/8) * 2^(e-7)
    }
    t[b] = (b & 0x80) ? -v : v;
  }
  return t;
}

const std::array<float, 256>& E4M3Table() {
  static const std::array<float, 256> table = MakeE4M3Table();
  return table;
}

// Encodes `n` floats as `dtype` (F64/F32/F16/BF16 only) into `out`.
void EncodeFromFloat(DType dtype, const float* in, size_t n, uint8_t* out) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(out, in, n * 4);
      return;
    case DType::kF64:
      for (size_t i = 0; i < n; ++i) {
        const double d = in[i];
        std::memcpy(out + 8 * i, &d, 8);
      }
      return;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t b = FloatToBf16Bits(in[i]);
        std::memcpy(out + 2 * i, &b, 2);
      }
      return;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t b = FloatToF16Bits(in[i]);
        std::memcpy(out + 2 * i, &b, 2);
      }
      return;
    default:
      return;  // refused by the caller
  }
}

bool EncodableFromFloat(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF64 || dtype == DType::kBF16 ||
         dtype == DType::kF16;
}

}  // namespace

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  for (const auto& e : kDTypes) {
    if (name == e.name) return e.dtype;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported dtype '", name, "' (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL F8_E4M3 F8_E5M2)"));
}

const char* DTypeName(DType dtype) { return Entry(dtype).name; }
size_t DTypeSize(DType dtype) { return Entry(dtype).size; }

float F16BitsToFloat(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exp = (bits >> 10) & 0x1Fu;
  const uint32_t man = bits & 0x3FFu;
  uint32_t u;
  if (exp == 0) {
    const float v = std::ldexp(static_cast<float>(man), -24);  // zero or subnormal
    return sign ? -v : v;
  } else if (exp == 31) {
    u = sign | 0x7F800000u | (man << 13);  // inf or NaN (payload kept)
  } else {
    u = sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t FloatToF16Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  u &= 0x7FFFFFFFu;
  if (u >= 0x7F800000u) return sign | (u > 0x7F800000u ? 0x7E00u : 0x7C00u);  // NaN / inf
  if (u >= 0x477FF000u) return sign | 0x7C00u;  // >= 65520 rounds to infinity
  if (u < 0x38800000u) {                          // below 2^-14: FP16 subnormal (or zero)
    float a;
    std::memcpy(&a, &u, 4);
    // Exact scaling by 2^24, then round-half-even to an integer count of 2^-24 units (1024 = 2^-14,
    // which is also the right encoding of the smallest normal).
    return sign | static_cast<uint16_t>(std::nearbyint(a * 16777216.0f));
  }
  const uint32_t odd = (u >> 13) & 1u;
  u += 0xFFFu + odd;
  return sign | static_cast<uint16_t>((u - (112u << 23)) >> 13);
}

float F8E4M3ToFloat(uint8_t bits) { return E4M3Table()[bits]; }

float F8E5M2ToFloat(uint8_t bits) { return F16BitsToFloat(static_cast<uint16_t>(bits) << 8); }

void DecodeToFloat(DType dtype, const uint8_t* p, size_t n, float* out) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(out, p, n * 4);
      return;
    case DType::kF64:
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(LoadLe<double>(p + 8 * i));
      return;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) out[i] = Bf16BitsToFloat(LoadLe<uint16_t>(p + 2 * i));
      return;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) out[i] = F16BitsToFloat(LoadLe<uint16_t>(p + 2 * i));
      return;
    case DType::kF8E4M3: {
      const auto& t = E4M3Table();
      for (size_t i = 0; i < n; ++i) out[i] = t[p[i]];
      return;
    }
    case DType::kF8E5M2:
      for (size_t i = 0; i < n; ++i) out[i] = F8E5M2ToFloat(p[i]);
      return;
    case DType::kI64:
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(LoadLe<int64_t>(p + 8 * i));
      return;
    case DType::kI32:
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(LoadLe<int32_t>(p + 4 * i));
      return;
    case DType::kI16:
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(LoadLe<int16_t>(p + 2 * i));
      return;
    case DType::kI8:
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<int8_t>(p[i]));
      return;
    case DType::kU8:
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(p[i]);
      return;
    case DType::kBool:
      for (size_t i = 0; i < n; ++i) out[i] = p[i] ? 1.0f : 0.0f;
      return;
  }
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;
  return n;
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

absl::StatusOr<uint64_t> TensorByteSize(DType dtype, const std::vector<int64_t>& shape,
                                        absl::string_view what) {
  // Limit to 2^62 bytes: far beyond any real tensor, and safe from overflow below.
  constexpr uint64_t kLimit = uint64_t{1} << 62;
  uint64_t bytes = DTypeSize(dtype);
  bool zero = false;
  for (const int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": negative dimension in shape ", ShapeToString(shape)));
    }
    if (d == 0) zero = true;
  }
  if (zero) return 0;
  for (const int64_t d : shape) {
    if (static_cast<uint64_t>(d) > kLimit / bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": shape ", ShapeToString(shape), " is too large"));
    }
    bytes *= static_cast<uint64_t>(d);
  }
  return bytes;
}

// ------------------------------------------------------------------------------------------------
// Reader

struct SafetensorsFile::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr != nullptr) ::munmap(addr, size);
  }
};

absl::StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  using google::protobuf::Value;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return absl::InternalError(absl::StrCat("cannot open ", path, ": ", std::strerror(err)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat("cannot stat ", path, ": ", std::strerror(err)));
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": file is ", file_size, " bytes, too short for a safetensors header length (8 bytes)"));
  }
  void* addr = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int mmap_err = errno;
  ::close(fd);
  if (addr == MAP_FAILED) {
    return absl::InternalError(absl::StrCat("cannot mmap ", path, ": ", std::strerror(mmap_err)));
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->addr = addr;
  mapping->size = file_size;
  const uint8_t* base = static_cast<const uint8_t*>(addr);

  const uint64_t header_len = LoadLe<uint64_t>(base);
  if (header_len > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": header length ", header_len,
                                                   " exceeds the limit of ", kMaxHeaderBytes, " bytes"));
  }
  if (header_len > file_size - 8) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": header length ", header_len,
                                                   " runs past the end of the file (", file_size,
                                                   " bytes)"));
  }
  const absl::string_view header(reinterpret_cast<const char*>(base + 8), header_len);
  if (header.empty() || header[0] != '{') {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": header does not start with '{' (not a safetensors file?)"));
  }
  ASSIGN_OR_RETURN(const google::protobuf::Struct root,
                   ParseJsonObject(header, absl::StrCat(path, ": header")));

  SafetensorsFile f;
  f.path_ = path;
  f.mapping_ = std::move(mapping);
  f.data_ = base + 8 + header_len;
  f.data_size_ = file_size - 8 - header_len;

  // Visit keys in sorted order so that the first error reported does not depend on hash order.
  std::vector<std::string> keys;
  keys.reserve(root.fields_size());
  for (const auto& kv : root.fields()) keys.push_back(kv.first);
  std::sort(keys.begin(), keys.end());

  for (const std::string& key : keys) {
    const Value& v = root.fields().at(key);
    if (key == "__metadata__") {
      if (v.kind_case() != Value::kStructValue) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": __metadata__ must be an object of strings, got ", JsonKindName(v)));
      }
      for (const auto& kv : v.struct_value().fields()) {
        ASSIGN_OR_RETURN(f.metadata_[kv.first],
                         JsonToString(kv.second, absl::StrCat(path, ": __metadata__ '", kv.first, "'")));
      }
      continue;
    }
    const std::string what = absl::StrCat(path, ": tensor '", key, "'");
    if (v.kind_case() != Value::kStructValue) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": entry must be an object, got ", JsonKindName(v)));
    }
    const auto& fields = v.struct_value().fields();
    for (const char* required : {"dtype", "shape", "data_offsets"}) {
      if (fields.find(required) == fields.end()) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": missing \"", required, "\""));
      }
    }
    TensorInfo info;
    info.name = key;
    ASSIGN_OR_RETURN(const std::string dtype_name,
                     JsonToString(fields.at("dtype"), absl::StrCat(what, ": dtype")));
    auto dtype = ParseDType(dtype_name);
    if (!dtype.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", dtype.status().message()));
    }
    info.dtype = *dtype;

    const Value& shape = fields.at("shape");
    if (shape.kind_case() != Value::kListValue) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": shape must be an array, got ", JsonKindName(shape)));
    }
    for (int i = 0; i < shape.list_value().values_size(); ++i) {
      ASSIGN_OR_RETURN(const uint64_t d, JsonToUint64(shape.list_value().values(i),
                                                      absl::StrCat(what, ": shape[", i, "]")));
      info.shape.push_back(static_cast<int64_t>(d));
    }

    const Value& offsets = fields.at("data_offsets");
    if (offsets.kind_case() != Value::kListValue || offsets.list_value().values_size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": data_offsets must be an array [begin, end]"));
    }
    ASSIGN_OR_RETURN(info.begin, JsonToUint64(offsets.list_value().values(0),
                                              absl::StrCat(what, ": data_offsets[0]")));
    ASSIGN_OR_RETURN(info.end, JsonToUint64(offsets.list_value().values(1),
                                            absl::StrCat(what, ": data_offsets[1]")));
    const std::string offsets_text = absl::StrCat("data_offsets [", info.begin, ",", info.end, "]");
    if (info.end < info.begin) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", offsets_text, " has end < begin"));
    }
    ASSIGN_OR_RETURN(const uint64_t bytes, TensorByteSize(info.dtype, info.shape, what));
    if (info.end - info.begin != bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": ", offsets_text, " span ", info.end - info.begin, " bytes, but shape ",
          ShapeToString(info.shape), " of ", dtype_name, " needs ", bytes));
    }
    if (info.end > f.data_size_) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", offsets_text,
                                                     " run past the end of the data buffer (",
                                                     f.data_size_, " bytes; truncated file?)"));
    }
    f.tensors_.push_back(std::move(info));
  }

  // The tensors must tile the data buffer exactly.
  std::sort(f.tensors_.begin(), f.tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t cursor = 0;
  const std::string* previous = nullptr;
  for (const TensorInfo& t : f.tensors_) {
    if (t.begin > cursor) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": hole in the data buffer: bytes [", cursor, ",", t.begin,
          ") before tensor '", t.name, "' belong to no tensor"));
    }
    if (t.begin < cursor) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor '", t.name, "' data_offsets [", t.begin, ",", t.end,
          "] overlap tensor '", previous ? *previous : std::string(), "', which ends at ", cursor));
    }
    cursor = t.end;
    previous = &t.name;
  }
  if (cursor != f.data_size_) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": data buffer has ", f.data_size_, " bytes but the tensors cover only ", cursor,
        " (trailing bytes belong to no tensor)"));
  }
  f.by_name_.reserve(f.tensors_.size());
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.by_name_.emplace(f.tensors_[i].name, i);
  return f;
}

const TensorInfo* SafetensorsFile::Find(absl::string_view name) const {
  const auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<std::vector<float>> SafetensorsFile::ReadAsFloat(const std::string& name) const {
  const TensorInfo* info = Find(name);
  if (info == nullptr) {
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor '", name, "'"));
  }
  std::vector<float> out(static_cast<size_t>(info->numel()));
  DecodeToFloat(info->dtype, RawData(*info), out.size(), out.data());
  return out;
}

// ------------------------------------------------------------------------------------------------
// Writer

absl::Status WriteSafetensors(const std::string& path, const std::vector<WriteTensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::vector<uint64_t> bytes(tensors.size());
  std::set<std::string> names;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const WriteTensor& t = tensors[i];
    const std::string what = absl::StrCat(path, ": tensor '", t.name, "'");
    if (t.name.empty() || t.name == "__metadata__") {
      return absl::InvalidArgumentError(absl::StrCat(what, ": invalid tensor name"));
    }
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": duplicate tensor name"));
    }
    ASSIGN_OR_RETURN(bytes[i], TensorByteSize(t.dtype, t.shape, what));
    if (bytes[i] > 0 && t.data == nullptr && t.raw == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": no data"));
    }
    if (t.raw == nullptr && bytes[i] > 0 && !EncodableFromFloat(t.dtype)) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": cannot encode floats as ", DTypeName(t.dtype), "; pass pre-encoded bytes in `raw`"));
    }
  }

  // Largest elements first, then by name: every tensor starts at a multiple of its element size.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const size_t sa = DTypeSize(tensors[a].dtype), sb = DTypeSize(tensors[b].dtype);
    if (sa != sb) return sa > sb;
    return tensors[a].name < tensors[b].name;
  });

  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (auto it = metadata.begin(); it != metadata.end(); ++it) {
      if (it != metadata.begin()) header += ",";
      absl::StrAppend(&header, JsonQuote(it->first), ":", JsonQuote(it->second));
    }
    header += "}";
    first = false;
  }
  uint64_t offset = 0;
  for (const size_t i : order) {
    const WriteTensor& t = tensors[i];
    if (!first) header += ",";
    first = false;
    absl::StrAppend(&header, JsonQuote(t.name), ":{\"dtype\":\"", DTypeName(t.dtype),
                    "\",\"shape\":", ShapeToString(t.shape), ",\"data_offsets\":[", offset, ",",
                    offset + bytes[i], "]}");
    offset += bytes[i];
  }
  header += "}";
  // 8 + header length must be a multiple of 8 so the data buffer starts 8-byte aligned.
  header.append((8 - header.size() % 8) % 8, ' ');

  ASSIGN_OR_RETURN(AtomicFileWriter out, AtomicFileWriter::Create(path));
  const uint64_t header_len = header.size();
  RETURN_IF_ERROR(out.Append(&header_len, 8));
  RETURN_IF_ERROR(out.Append(header));

  constexpr size_t kChunk = size_t{1} << 16;  // elements converted per write
  std::vector<uint8_t> buffer;
  for (const size_t i : order) {
    const WriteTensor& t = tensors[i];
    if (bytes[i] == 0) continue;
    if (t.raw != nullptr) {
      RETURN_IF_ERROR(out.Append(t.raw, bytes[i]));
      continue;
    }
    const size_t esize = DTypeSize(t.dtype);
    const size_t numel = bytes[i] / esize;
    buffer.resize(std::min(numel, kChunk) * esize);
    for (size_t start = 0; start < numel; start += kChunk) {
      const size_t n = std::min(kChunk, numel - start);
      EncodeFromFloat(t.dtype, t.data + start, n, buffer.data());
      RETURN_IF_ERROR(out.Append(buffer.data(), n * esize));
    }
  }
  return out.Commit();
}

}  // namespace moe::hf
