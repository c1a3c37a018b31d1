#include "src/checkpoint/checkpoint_file.hpp"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "src/checkpoint/content_hash.hpp"
#include "src/checkpoint/fletcher32.hpp"
#include "src/core/checked_size.hpp"
#include "src/io/hdf5_handle.hpp"

namespace temoe {

namespace {

namespace fs = std::filesystem;
using hdf5::Handle;

constexpr const char* kFormatName = "temoe-checkpoint";
// The file starts with an HDF5 user block of this size holding the text header (magic, format
// version, the length and hash of the HDF5 content after it). HDF5 tools skip it.
constexpr uint64_t kHeaderBytes = 512;
// Chunks of at most 4 MiB: large enough that the per-chunk cost (index entry, filter call, one
// pwrite) is negligible, small enough that a damaged chunk is located precisely.
constexpr hsize_t kChunkBytes = hsize_t{4} << 20;

// Tensor chunks are written and read directly (H5Dwrite_chunk / H5Dread_chunk) from the tensors'
// own float32 memory, which must therefore be the file's little-endian layout.
static_assert(std::endian::native == std::endian::little, "checkpoint files assume a little-endian host");

// How a dataset is cut into chunks: whole trailing axes, one axis (the split axis) cut into
// near-equal pieces, and the axes before it one index at a time. Every chunk is then one
// contiguous range of the row-major array, so it is copied with one memcpy, and near-equal pieces
// waste little space in the last, partial chunk (HDF5 stores every chunk at full size).
struct ChunkPlan {
  std::vector<hsize_t> dims;
  std::vector<hsize_t> chunk;
  size_t split_axis = 0;
  hsize_t inner = 1;  // elements per index of the split axis

  hsize_t chunk_elements() const { return chunk[split_axis] * inner; }
  hsize_t chunk_count() const {
    hsize_t count = 1;
    for (size_t axis = 0; axis <= split_axis; ++axis) count *= (dims[axis] + chunk[axis] - 1) / chunk[axis];
    return count;
  }
  // Chunk number `index` (row-major over the chunk grid): its offset in elements per axis, its
  // first element in the row-major array, and how many elements of the array it holds.
  void locate(hsize_t index, std::vector<hsize_t>& offset, hsize_t& first, hsize_t& count) const {
    offset.assign(dims.size(), 0);
    for (size_t axis = split_axis + 1; axis-- > 0;) {
      const hsize_t grid = (dims[axis] + chunk[axis] - 1) / chunk[axis];
      offset[axis] = (index % grid) * chunk[axis];
      index /= grid;
    }
    first = 0;
    hsize_t stride = inner;
    for (size_t axis = split_axis + 1; axis-- > 0;) {
      first += offset[axis] * stride;
      stride *= dims[axis];
    }
    count = std::min(chunk[split_axis], dims[split_axis] - offset[split_axis]) * inner;
  }
};

// For a dataset with at least one element.
ChunkPlan plan_chunks(const std::vector<hsize_t>& dims, size_t element_bytes) {
  ChunkPlan plan;
  plan.dims = dims;
  plan.chunk = dims;
  hsize_t budget = std::max<hsize_t>(1, kChunkBytes / std::max<size_t>(element_bytes, 1));
  for (size_t axis = dims.size(); axis-- > 0;) {
    plan.split_axis = axis;
    if (dims[axis] <= budget) {
      budget = std::max<hsize_t>(1, budget / dims[axis]);
      continue;
    }
    const hsize_t pieces = (dims[axis] + budget - 1) / budget;
    plan.chunk[axis] = (dims[axis] + pieces - 1) / pieces;
    for (size_t before = 0; before < axis; ++before) plan.chunk[before] = 1;
    break;
  }
  for (size_t axis = plan.split_axis + 1; axis < dims.size(); ++axis) plan.inner *= dims[axis];
  return plan;
}

std::string offset_text(const std::vector<hsize_t>& offset) {
  std::string text = "[";
  for (size_t i = 0; i < offset.size(); ++i) text += (i ? ", " : "") + std::to_string(offset[i]);
  return text + "]";
}

// ---------------------------------------------------------------------------------------------
// Writing

class Writer {
 public:
  explicit Writer(fs::path path) : path_(std::move(path)) {}

  [[noreturn]] void fail(const std::string& what) const {
    const std::string cause = hdf5::take_error_stack();
    TEMOE_FAIL(path_.string() << ": cannot write checkpoint: " << what << (cause.empty() ? "" : " (HDF5: " + cause + ")"));
  }

  Handle check(hid_t id, Handle::Closer closer, const std::string& what) const {
    if (id < 0) fail(what);
    return Handle(id, closer);
  }
  void check(herr_t status, const std::string& what) const {
    if (status < 0) fail(what);
  }

  Handle create_file() const {
    Handle access = check(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "file access properties");
    // The 1.10 object format: object headers, chunk indexes and the superblock carry checksums.
    check(H5Pset_libver_bounds(access.get(), H5F_LIBVER_V110, H5F_LIBVER_V110), "format bounds");
    Handle creation = check(H5Pcreate(H5P_FILE_CREATE), H5Pclose, "file creation properties");
    check(H5Pset_userblock(creation.get(), kHeaderBytes), "user block");
    return check(H5Fcreate(path_.c_str(), H5F_ACC_TRUNC, creation.get(), access.get()), H5Fclose, "create the file");
  }

  Handle create_group(hid_t parent, const std::string& name) const {
    Handle properties = check(H5Pcreate(H5P_GROUP_CREATE), H5Pclose, "group properties");
    // Remember creation order, so that readers list parameters in the set's order.
    check(H5Pset_link_creation_order(properties.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED),
          "group creation order");
    return check(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, properties.get(), H5P_DEFAULT), H5Gclose,
                 "create group '" + name + "'");
  }

  // A chunked, Fletcher32-checksummed dataset of `dims` (rank 0 is stored as [1] with a `scalar`
  // attribute, since HDF5 cannot chunk a scalar dataspace).
  void write_dataset(hid_t parent, const std::string& name, hid_t file_type, hid_t memory_type, Shape shape,
                     const void* data) const {
    const bool scalar = shape.empty();
    if (scalar) shape = {1};
    std::vector<hsize_t> dims(shape.begin(), shape.end());
    Handle dataset = create_dataset(parent, name, file_type, dims);
    if (temoe::element_count(shape) > 0) {
      check(H5Dwrite(dataset.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "write dataset '" + name + "'");
    }
    if (scalar) write_attribute(dataset.get(), "scalar", H5T_STD_I32LE, H5T_NATIVE_INT32, int32_t{1});
  }

  // A float32 tensor, chunk by chunk with H5Dwrite_chunk: each chunk is copied once into a reused
  // buffer, its Fletcher32 value appended as the filter would, and written as it is. This skips
  // HDF5's filter pipeline, which allocates a fresh buffer per chunk and checksums slowly.
  void write_tensor(hid_t parent, const std::string& name, const Tensor& tensor) {
    if (tensor.numel() == 0 || tensor.shape().empty()) {
      write_dataset(parent, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, tensor.shape(), tensor.data());
      return;
    }
    const std::vector<hsize_t> dims(tensor.shape().begin(), tensor.shape().end());
    Handle dataset = create_dataset(parent, name, H5T_IEEE_F32LE, dims);
    const ChunkPlan plan = plan_chunks(dims, sizeof(float));
    const size_t chunk_bytes = static_cast<size_t>(plan.chunk_elements()) * sizeof(float);
    if (buffer_.size() < chunk_bytes + 4) buffer_.resize(chunk_bytes + 4);
    std::vector<hsize_t> offset;
    hsize_t first = 0, count = 0;
    const auto* source = reinterpret_cast<const std::byte*>(tensor.data());
    for (hsize_t index = 0; index < plan.chunk_count(); ++index) {
      plan.locate(index, offset, first, count);
      std::memcpy(buffer_.data(), source + first * sizeof(float), count * sizeof(float));
      std::memset(buffer_.data() + count * sizeof(float), 0, chunk_bytes - count * sizeof(float));
      const uint32_t checksum = hdf5_fletcher32(std::span<const std::byte>(buffer_.data(), chunk_bytes));
      std::memcpy(buffer_.data() + chunk_bytes, &checksum, 4);  // little-endian, as the filter stores it
      check(H5Dwrite_chunk(dataset.get(), H5P_DEFAULT, 0, offset.data(), chunk_bytes + 4, buffer_.data()),
            "write chunk " + offset_text(offset) + " of '" + name + "'");
    }
  }

  void write_text_dataset(hid_t parent, const std::string& name, const std::string& text) const {
    Handle type = string_type(text.size());
    write_dataset(parent, name, type.get(), type.get(), {1}, text.c_str());
  }

  template <typename T>
  void write_attribute(hid_t object, const std::string& name, hid_t file_type, hid_t memory_type, T value) const {
    Handle space = check(H5Screate(H5S_SCALAR), H5Sclose, "attribute dataspace");
    Handle attribute = check(H5Acreate2(object, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                             H5Aclose, "create attribute '" + name + "'");
    check(H5Awrite(attribute.get(), memory_type, &value), "write attribute '" + name + "'");
  }

  void write_text_attribute(hid_t object, const std::string& name, const std::string& text) const {
    Handle type = string_type(text.size());
    Handle space = check(H5Screate(H5S_SCALAR), H5Sclose, "attribute dataspace");
    Handle attribute = check(H5Acreate2(object, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                             H5Aclose, "create attribute '" + name + "'");
    check(H5Awrite(attribute.get(), type.get(), text.c_str()), "write attribute '" + name + "'");
  }

 private:
  // A fixed-length, NUL-padded string type (h5dump prints it, h5py reads bytes). Length >= 1.
  Handle string_type(size_t length) const {
    Handle type = check(H5Tcopy(H5T_C_S1), H5Tclose, "string type");
    check(H5Tset_size(type.get(), std::max<size_t>(length, 1)), "string size");
    check(H5Tset_strpad(type.get(), H5T_STR_NULLPAD), "string padding");
    return type;
  }

  // A chunked dataset with the Fletcher32 filter, chunked as plan_chunks says.
  Handle create_dataset(hid_t parent, const std::string& name, hid_t file_type, const std::vector<hsize_t>& dims) const {
    std::vector<hsize_t> max_dims = dims;
    std::vector<hsize_t> chunk;
    if (std::find(dims.begin(), dims.end(), 0) != dims.end()) {
      // A chunk may not exceed a fixed extent, and an extent of 0 admits no chunk: let it grow.
      std::fill(max_dims.begin(), max_dims.end(), H5S_UNLIMITED);
      chunk.assign(dims.size(), 1);
    } else {
      chunk = plan_chunks(dims, H5Tget_size(file_type)).chunk;
    }
    Handle space = check(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), max_dims.data()), H5Sclose,
                         "dataspace of '" + name + "'");
    Handle properties = check(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "dataset properties");
    check(H5Pset_chunk(properties.get(), static_cast<int>(chunk.size()), chunk.data()), "chunking of '" + name + "'");
    check(H5Pset_fletcher32(properties.get()), "Fletcher32 filter of '" + name + "'");
    check(H5Pset_fill_time(properties.get(), H5D_FILL_TIME_NEVER), "fill time of '" + name + "'");
    return check(H5Dcreate2(parent, name.c_str(), file_type, space.get(), H5P_DEFAULT, properties.get(), H5P_DEFAULT),
                 H5Dclose, "create dataset '" + name + "'");
  }

  fs::path path_;
  std::vector<std::byte> buffer_;  // one chunk and its checksum, reused
};

// The first element that is NaN or infinite, or -1. A checkpoint never holds one: a non-finite
// parameter or moment would be committed over the last good state and resumed from forever after.
int64_t first_non_finite(const Tensor& tensor) {
  const float* values = tensor.data();
  for (int64_t i = 0; i < tensor.numel(); ++i) {
    if (!std::isfinite(values[i])) return i;
  }
  return -1;
}

void validate_name(const std::string& name, const std::string& what) {
  TEMOE_CHECK(!name.empty() && name != "." && name.find('/') == std::string::npos,
              "checkpoint: " << what << " name '" << name << "' must be non-empty and contain no '/'");
}

void validate(const Checkpoint& checkpoint) {
  TEMOE_CHECK(checkpoint.step >= 0 && checkpoint.tokens >= 0,
              "checkpoint: step " << checkpoint.step << " and tokens " << checkpoint.tokens << " must not be negative");
  TEMOE_CHECK(!checkpoint.ranks.empty(), "checkpoint: the state of at least one rank is required");
  for (const auto& rank : checkpoint.ranks) {
    TEMOE_CHECK(rank.random_state.size() == checkpoint.ranks[0].random_state.size() &&
                    rank.data_position.size() == checkpoint.ranks[0].data_position.size(),
                "checkpoint: every rank must have random states and data positions of the same lengths as rank 0");
  }
  if (checkpoint.expert_placement) {
    const StoredPlacement& placement = *checkpoint.expert_placement;
    TEMOE_CHECK(placement.ep_size >= 1 && !placement.owners.empty(),
                "checkpoint: an expert placement needs ep_size >= 1 and at least one expert, got ep_size "
                    << placement.ep_size << " and " << placement.owners.size() << " experts");
    for (size_t expert = 0; expert < placement.owners.size(); ++expert) {
      TEMOE_CHECK(placement.owners[expert] >= 0 && placement.owners[expert] < placement.ep_size,
                  "checkpoint: expert placement owners[" << expert << "] = " << placement.owners[expert]
                                                         << ", expected a rank in [0, " << placement.ep_size << ")");
    }
  }
  std::set<std::string> set_names;
  for (const auto& set : checkpoint.parameter_sets) {
    validate_name(set.name, "parameter set");
    TEMOE_CHECK(set_names.insert(set.name).second, "checkpoint: parameter set '" << set.name << "' appears twice");
    TEMOE_CHECK(set.values.size() == set.parameter_names.size(),
                "checkpoint: parameter set '" << set.name << "' has " << set.parameter_names.size() << " names and "
                                              << set.values.size() << " tensors");
    const size_t moments = set.has_optimizer ? set.values.size() : 0;
    TEMOE_CHECK(set.first_moments.size() == moments && set.second_moments.size() == moments,
                "checkpoint: parameter set '" << set.name << "' needs " << moments << " first and second moments");
    std::set<std::string> names;
    for (size_t i = 0; i < set.values.size(); ++i) {
      validate_name(set.parameter_names[i], "parameter");
      TEMOE_CHECK(names.insert(set.parameter_names[i]).second,
                  "checkpoint: parameter '" << set.parameter_names[i] << "' appears twice in '" << set.name << "'");
      TEMOE_CHECK(set.values[i].defined() && set.values[i].device() == Device::cpu,
                  "checkpoint: parameter '" << set.parameter_names[i] << "' must be a host tensor");
      if (set.has_optimizer) {
        check_shape(set.first_moments[i], set.values[i].shape(), "checkpoint first moment");
        check_shape(set.second_moments[i], set.values[i].shape(), "checkpoint second moment");
      }
      for (const auto& [tensor, what] : {std::pair{&set.values[i], "value"},
                                         std::pair{set.has_optimizer ? &set.first_moments[i] : nullptr, "exp_avg"},
                                         std::pair{set.has_optimizer ? &set.second_moments[i] : nullptr, "exp_avg_sq"}}) {
        if (tensor == nullptr) continue;
        const int64_t bad = first_non_finite(*tensor);
        TEMOE_CHECK(bad < 0, "checkpoint: refusing to write a non-finite " << what << " of parameter '"
                                 << set.parameter_names[i] << "' in '" << set.name << "': element " << bad << " is "
                                 << tensor->data()[bad]);
      }
    }
  }
}

template <typename T>
std::vector<T> rank_matrix(const std::vector<RankState>& ranks, std::vector<T> RankState::*member) {
  std::vector<T> flat;
  for (const auto& rank : ranks) flat.insert(flat.end(), (rank.*member).begin(), (rank.*member).end());
  return flat;
}

void fsync_file(const fs::path& path) {
  const int descriptor = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (descriptor < 0) TEMOE_FAIL(path.string() << ": cannot open for fsync: " << std::strerror(errno));
  const int status = ::fsync(descriptor);
  const int saved = errno;
  ::close(descriptor);
  if (status != 0) TEMOE_FAIL(path.string() << ": fsync failed: " << std::strerror(saved));
}

std::string header_text(int format_version, uint64_t content_bytes, uint64_t content_hash) {
  char hash[24];
  std::snprintf(hash, sizeof(hash), "%016llx", static_cast<unsigned long long>(content_hash));
  std::string text = std::string(kFormatName) + "\nformat_version " + std::to_string(format_version) +
                     "\ncontent_bytes " + std::to_string(content_bytes) + "\ncontent_hash " + hash + "\n";
  text.resize(kHeaderBytes, '\0');
  return text;
}

// Hashes the HDF5 content of a closed file and writes the header into its user block.
void write_header(const fs::path& path, int format_version) {
  const uint64_t size = fs::file_size(path);
  TEMOE_CHECK(size >= kHeaderBytes, path.string() << ": " << size << " bytes, shorter than the header");
  const std::string header = header_text(format_version, size - kHeaderBytes, hash_file_range(path, kHeaderBytes, size - kHeaderBytes));
  const int descriptor = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (descriptor < 0) TEMOE_FAIL(path.string() << ": cannot open to write the header: " << std::strerror(errno));
  const ssize_t written = ::pwrite(descriptor, header.data(), header.size(), 0);
  const int saved = errno;
  ::close(descriptor);
  if (written != static_cast<ssize_t>(header.size())) {
    TEMOE_FAIL(path.string() << ": cannot write the header: " << std::strerror(saved));
  }
}

struct Header {
  int format_version = 0;
  uint64_t content_bytes = 0;
  uint64_t content_hash = 0;
};

// ---------------------------------------------------------------------------------------------
// Reading

class Reader {
 public:
  explicit Reader(fs::path path) : path_(std::move(path)) {}

  [[noreturn]] void refuse(CheckpointProblem problem, const std::string& what) const {
    const std::string cause = hdf5::take_error_stack();
    throw CheckpointError(problem, path_.string() + ": " + (problem == CheckpointProblem::damaged ? "damaged checkpoint: " : "") +
                                       what + (cause.empty() ? "" : " (HDF5: " + cause + ")"));
  }
  [[noreturn]] void damaged(const std::string& what) const { refuse(CheckpointProblem::damaged, what); }

  Handle open_file() const {
    std::error_code error;
    const auto size = fs::file_size(path_, error);
    if (error) {
      if (!fs::exists(path_)) refuse(CheckpointProblem::missing, "no such checkpoint file");
      damaged("cannot read the file size: " + error.message());
    }
    if (size == 0) damaged("the file is empty (0 bytes), expected an HDF5 checkpoint");
    verify_header_and_content(size);
    file_bytes_ = size;
    const hid_t file = H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) damaged("the HDF5 file cannot be opened (" + std::to_string(size) + " bytes; truncated or corrupted?)");
    return Handle(file, H5Fclose);
  }

  // The text header, then the whole-file hash: damage anywhere in the file is caught here, before
  // HDF5 parses any of it.
  void verify_header_and_content(uint64_t size) const {
    if (size < kHeaderBytes) {
      damaged("truncated or not a checkpoint: " + std::to_string(size) + " bytes, shorter than the " +
              std::to_string(kHeaderBytes) + "-byte header of a temoe checkpoint");
    }
    std::string text(kHeaderBytes, '\0');
    {
      std::ifstream stream(path_, std::ios::binary);
      stream.read(text.data(), static_cast<std::streamsize>(kHeaderBytes));
      if (stream.gcount() != static_cast<std::streamsize>(kHeaderBytes)) damaged("cannot read the header");
    }
    if (text.rfind(kFormatName, 0) != 0) {
      if (text.rfind("\x89HDF", 0) == 0) {
        refuse(CheckpointProblem::incompatible, "an HDF5 file without the temoe checkpoint header, not a temoe checkpoint");
      }
      damaged("no '" + std::string(kFormatName) + "' header at the start of the file, expected a temoe checkpoint (" +
              std::to_string(size) + " bytes)");
    }
    Header header;
    std::istringstream lines(text.substr(0, text.find('\0')));
    std::string magic, key;
    lines >> magic;
    if (!(lines >> key) || key != "format_version" || !(lines >> header.format_version)) {
      damaged("unreadable header: expected 'format_version N' after '" + std::string(kFormatName) + "'");
    }
    if (header.format_version != kCheckpointFormatVersion) {
      refuse(CheckpointProblem::incompatible, "checkpoint format version " + std::to_string(header.format_version) +
                                                  ", this build reads version " + std::to_string(kCheckpointFormatVersion));
    }
    if (!(lines >> key) || key != "content_bytes" || !(lines >> header.content_bytes) || !(lines >> key) ||
        key != "content_hash" || !(lines >> std::hex >> header.content_hash) ||
        text != header_text(header.format_version, header.content_bytes, header.content_hash)) {
      damaged("unreadable header: expected 'content_bytes N' and 'content_hash HEX' lines, then zero padding");
    }
    const uint64_t expected_size = kHeaderBytes + header.content_bytes;
    if (size < expected_size) {
      damaged("truncated: the file has " + std::to_string(size) + " bytes, its header promises " +
              std::to_string(expected_size));
    }
    if (size > expected_size) {
      damaged("the file has " + std::to_string(size) + " bytes, its header says " + std::to_string(expected_size) +
              " (data appended after the checkpoint was written)");
    }
    uint64_t actual = 0;
    try {
      actual = hash_file_range(path_, kHeaderBytes, header.content_bytes);
    } catch (const Error& error) {
      damaged(std::string("cannot read the content: ") + error.what());
    }
    if (actual != header.content_hash) {
      char text_hash[64];
      std::snprintf(text_hash, sizeof(text_hash), "%016llx, expected %016llx", static_cast<unsigned long long>(actual),
                    static_cast<unsigned long long>(header.content_hash));
      damaged(std::string("content checksum mismatch: the ") + std::to_string(header.content_bytes) +
              " bytes after the header hash to " + text_hash + " (bytes changed after the checkpoint was written)");
    }
  }

  bool has_link(hid_t parent, const std::string& name) const {
    const htri_t exists = H5Lexists(parent, name.c_str(), H5P_DEFAULT);
    if (exists < 0) hdf5::take_error_stack();
    return exists > 0;
  }

  Handle open_group(hid_t parent, const std::string& name, const std::string& full) const {
    if (!has_link(parent, name)) damaged("missing group " + full);
    const hid_t group = H5Gopen2(parent, name.c_str(), H5P_DEFAULT);
    if (group < 0) damaged("cannot open group " + full);
    return Handle(group, H5Gclose);
  }

  // Names of the links in a group, in creation order.
  std::vector<std::string> member_names(hid_t group, const std::string& full) const {
    H5G_info_t info;
    if (H5Gget_info(group, &info) < 0) damaged("cannot list group " + full);
    std::vector<std::string> names;
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      const ssize_t length = H5Lget_name_by_idx(group, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
      if (length < 0) damaged("cannot read the name of member " + std::to_string(i) + " of " + full);
      std::string name(static_cast<size_t>(length) + 1, '\0');
      if (H5Lget_name_by_idx(group, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT) < 0) {
        damaged("cannot read the name of member " + std::to_string(i) + " of " + full);
      }
      name.resize(static_cast<size_t>(length));
      names.push_back(name);
    }
    return names;
  }

  struct Opened {
    Handle dataset;
    Handle type;
    Shape shape;
  };

  Opened open_dataset(hid_t parent, const std::string& name, const std::string& full) const {
    if (!has_link(parent, name)) damaged("missing dataset " + full);
    Opened opened;
    opened.dataset = Handle(H5Dopen2(parent, name.c_str(), H5P_DEFAULT), H5Dclose);
    if (!opened.dataset.valid()) damaged("cannot open dataset " + full);
    opened.type = Handle(H5Dget_type(opened.dataset.get()), H5Tclose);
    Handle space(H5Dget_space(opened.dataset.get()), H5Sclose);
    if (!opened.type.valid() || !space.valid()) damaged("cannot read the type and shape of dataset " + full);
    const int rank = H5Sget_simple_extent_ndims(space.get());
    if (rank < 0 || rank > 16) damaged("dataset " + full + " has an unreadable shape");
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    if (H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0) damaged("unreadable shape of " + full);
    opened.shape.assign(dims.begin(), dims.end());
    check_stored_size(opened, dims, full);
    // Every dataset of a temoe checkpoint is checksummed; one without the filter was not written by us.
    Handle properties(H5Dget_create_plist(opened.dataset.get()), H5Pclose);
    if (!properties.valid() || H5Pget_nfilters(properties.get()) < 1 ||
        H5Pget_filter_by_id2(properties.get(), H5Z_FILTER_FLETCHER32, nullptr, nullptr, nullptr, 0, nullptr, nullptr) < 0) {
      damaged("dataset " + full + " has no Fletcher32 checksum, expected on every dataset of a temoe checkpoint");
    }
    return opened;
  }

  // Refuses, before anything is allocated, a dataset whose shape and element size claim more bytes
  // than the whole file holds (the writer stores data uncompressed), or whose element count
  // overflows: a small file must not make the reader ask for gigabytes.
  void check_stored_size(const Opened& opened, const std::vector<hsize_t>& dims, const std::string& full) const {
    for (const hsize_t extent : dims) {
      if (extent > static_cast<hsize_t>(std::numeric_limits<int64_t>::max())) {
        damaged("dataset " + full + " has shape " + offset_text(dims) + ", expected extents of at most " +
                std::to_string(std::numeric_limits<int64_t>::max()));
      }
    }
    int64_t bytes = 0;
    try {
      bytes = checked_bytes(opened.shape, static_cast<int64_t>(H5Tget_size(opened.type.get())), "dataset " + full);
    } catch (const Error& error) {
      damaged(error.what());
    }
    if (static_cast<uint64_t>(bytes) > file_bytes_) {
      damaged("dataset " + full + " has shape " + shape_string(opened.shape) + " of " +
              std::to_string(H5Tget_size(opened.type.get())) + "-byte elements (" + std::to_string(bytes) +
              " bytes), more than the whole file (" + std::to_string(file_bytes_) + " bytes)");
    }
  }

  void expect_type(const Opened& opened, H5T_class_t type_class, size_t bytes, const std::string& full,
                   const char* expected) const {
    if (H5Tget_class(opened.type.get()) != type_class || H5Tget_size(opened.type.get()) != bytes) {
      damaged("dataset " + full + " has the wrong element type, expected " + expected);
    }
  }

  void read_into(const Opened& opened, hid_t memory_type, void* data, const std::string& full) const {
    if (temoe::element_count(opened.shape) == 0) return;
    if (H5Dread(opened.dataset.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
      damaged("dataset " + full + " cannot be read: its data fail the Fletcher32 checksum or are cut short");
    }
  }

  Tensor read_tensor(hid_t parent, const std::string& name, const std::string& full) const {
    Opened opened = open_dataset(parent, name, full);
    expect_type(opened, H5T_FLOAT, 4, full, "float32");
    Shape shape = opened.shape;
    if (H5Aexists(opened.dataset.get(), "scalar") > 0) {
      if (shape != Shape{1}) damaged("dataset " + full + " is marked scalar but has shape " + shape_string(shape));
      shape = {};
    }
    Tensor tensor(shape);
    if (tensor.numel() == 0) return tensor;
    const std::vector<hsize_t> dims(opened.shape.begin(), opened.shape.end());
    const ChunkPlan plan = plan_chunks(dims, sizeof(float));
    if (has_plan_layout(opened, plan)) {
      read_chunks_directly(opened, plan, tensor, full);
    } else {
      read_into(opened, H5T_NATIVE_FLOAT, tensor.data(), full);  // HDF5's own pipeline checks the checksums
    }
    return tensor;
  }

  // Whether the dataset is chunked as we write tensors, with Fletcher32 as its only filter.
  bool has_plan_layout(const Opened& opened, const ChunkPlan& plan) const {
    Handle properties(H5Dget_create_plist(opened.dataset.get()), H5Pclose);
    if (!properties.valid() || H5Pget_layout(properties.get()) != H5D_CHUNKED || H5Pget_nfilters(properties.get()) != 1) {
      hdf5::take_error_stack();
      return false;
    }
    std::vector<hsize_t> chunk(plan.dims.size());
    if (H5Pget_chunk(properties.get(), static_cast<int>(chunk.size()), chunk.data()) != static_cast<int>(chunk.size())) {
      hdf5::take_error_stack();
      return false;
    }
    return chunk == plan.chunk;
  }

  // Each chunk read as stored (H5Dread_chunk) into a reused buffer, its Fletcher32 value checked
  // here, and its elements copied into the tensor.
  void read_chunks_directly(const Opened& opened, const ChunkPlan& plan, Tensor& tensor, const std::string& full) const {
    const size_t chunk_bytes = static_cast<size_t>(plan.chunk_elements()) * sizeof(float);
    if (buffer_.size() < chunk_bytes + 4) buffer_.resize(chunk_bytes + 4);
    std::vector<hsize_t> offset;
    hsize_t first = 0, count = 0;
    auto* target = reinterpret_cast<std::byte*>(tensor.data());
    for (hsize_t index = 0; index < plan.chunk_count(); ++index) {
      plan.locate(index, offset, first, count);
      const std::string chunk = "dataset " + full + ", chunk at " + offset_text(offset);
      hsize_t stored = 0;
      if (H5Dget_chunk_storage_size(opened.dataset.get(), offset.data(), &stored) < 0 || stored == 0) {
        damaged(chunk + ": missing");
      }
      if (stored != chunk_bytes + 4) {
        damaged(chunk + ": stored size " + std::to_string(stored) + " bytes, expected " + std::to_string(chunk_bytes + 4));
      }
      uint32_t filters_skipped = 0;
      if (H5Dread_chunk(opened.dataset.get(), H5P_DEFAULT, offset.data(), &filters_skipped, buffer_.data()) < 0) {
        damaged(chunk + ": cannot be read");
      }
      uint32_t stored_checksum = 0;
      std::memcpy(&stored_checksum, buffer_.data() + chunk_bytes, 4);
      const uint32_t checksum = hdf5_fletcher32(std::span<const std::byte>(buffer_.data(), chunk_bytes));
      if (filters_skipped != 0 || checksum != stored_checksum) {
        char values[64];
        std::snprintf(values, sizeof(values), "%08x, stored %08x", checksum, stored_checksum);
        damaged(chunk + ": fails its Fletcher32 checksum (computed " + values + ")");
      }
      std::memcpy(target + first * sizeof(float), buffer_.data(), count * sizeof(float));
    }
  }

  template <typename T>
  std::vector<T> read_integers(hid_t parent, const std::string& name, const std::string& full, hid_t memory_type,
                               H5T_sign_t sign, const char* expected, Shape& shape) const {
    Opened opened = open_dataset(parent, name, full);
    expect_type(opened, H5T_INTEGER, sizeof(T), full, expected);
    if (H5Tget_sign(opened.type.get()) != sign) damaged("dataset " + full + " has the wrong signedness, expected " + expected);
    shape = opened.shape;
    std::vector<T> values(static_cast<size_t>(temoe::element_count(shape)));
    read_into(opened, memory_type, values.data(), full);
    return values;
  }

  std::string read_text(hid_t parent, const std::string& name, const std::string& full) const {
    Opened opened = open_dataset(parent, name, full);
    if (H5Tget_class(opened.type.get()) != H5T_STRING || H5Tis_variable_str(opened.type.get()) != 0 ||
        opened.shape != Shape{1}) {
      damaged("dataset " + full + " is not one fixed-length string");
    }
    std::string text(H5Tget_size(opened.type.get()), '\0');
    read_into(opened, opened.type.get(), text.data(), full);
    text.resize(std::strlen(text.c_str()));
    return text;
  }

  Handle open_attribute(hid_t object, const std::string& name, const std::string& full) const {
    const htri_t exists = H5Aexists(object, name.c_str());
    if (exists <= 0) damaged("missing attribute '" + name + "' on " + full);
    Handle attribute(H5Aopen(object, name.c_str(), H5P_DEFAULT), H5Aclose);
    if (!attribute.valid()) damaged("cannot open attribute '" + name + "' on " + full);
    return attribute;
  }

  template <typename T>
  T read_attribute(hid_t object, const std::string& name, const std::string& full, hid_t memory_type) const {
    Handle attribute = open_attribute(object, name, full);
    Handle type(H5Aget_type(attribute.get()), H5Tclose);
    if (!type.valid() || H5Tget_class(type.get()) != H5T_INTEGER) {
      damaged("attribute '" + name + "' on " + full + " is not an integer");
    }
    T value{};
    if (H5Aread(attribute.get(), memory_type, &value) < 0) damaged("cannot read attribute '" + name + "' on " + full);
    return value;
  }

  std::string read_text_attribute(hid_t object, const std::string& name, const std::string& full) const {
    Handle attribute = open_attribute(object, name, full);
    Handle type(H5Aget_type(attribute.get()), H5Tclose);
    if (!type.valid() || H5Tget_class(type.get()) != H5T_STRING || H5Tis_variable_str(type.get()) != 0) {
      damaged("attribute '" + name + "' on " + full + " is not a fixed-length string");
    }
    std::string text(H5Tget_size(type.get()), '\0');
    if (H5Aread(attribute.get(), type.get(), text.data()) < 0) damaged("cannot read attribute '" + name + "' on " + full);
    text.resize(std::strlen(text.c_str()));
    return text;
  }

  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  mutable uint64_t file_bytes_ = 0;        // the file's size, set by open_file
  mutable std::vector<std::byte> buffer_;  // one chunk and its checksum, reused
};

void read_ranks(const Reader& reader, hid_t root, Checkpoint& checkpoint, int32_t world_size) {
  Handle ranks = reader.open_group(root, "ranks", "/ranks");
  Shape random_shape, position_shape;
  const auto random = reader.read_integers<uint64_t>(ranks.get(), "random_state", "/ranks/random_state",
                                                     H5T_NATIVE_UINT64, H5T_SGN_NONE, "uint64", random_shape);
  const auto positions = reader.read_integers<int64_t>(ranks.get(), "data_position", "/ranks/data_position",
                                                       H5T_NATIVE_INT64, H5T_SGN_2, "int64", position_shape);
  for (const auto& [name, shape] : {std::pair{"random_state", random_shape}, std::pair{"data_position", position_shape}}) {
    if (shape.size() != 2 || shape[0] != world_size) {
      reader.damaged(std::string("dataset /ranks/") + name + " has shape " + shape_string(shape) + ", expected [" +
                     std::to_string(world_size) + ", n] for the stored world_size " + std::to_string(world_size));
    }
  }
  checkpoint.ranks.resize(static_cast<size_t>(world_size));
  const auto random_length = static_cast<size_t>(random_shape[1]);
  const auto position_length = static_cast<size_t>(position_shape[1]);
  for (size_t rank = 0; rank < checkpoint.ranks.size(); ++rank) {
    checkpoint.ranks[rank].random_state.assign(random.begin() + static_cast<std::ptrdiff_t>(rank * random_length),
                                               random.begin() + static_cast<std::ptrdiff_t>((rank + 1) * random_length));
    checkpoint.ranks[rank].data_position.assign(
        positions.begin() + static_cast<std::ptrdiff_t>(rank * position_length),
        positions.begin() + static_cast<std::ptrdiff_t>((rank + 1) * position_length));
  }
}

// /expert_placement is optional: runs without expert parallelism, and files written before
// placements were recorded, have none.
std::optional<StoredPlacement> read_expert_placement(const Reader& reader, hid_t root) {
  if (!reader.has_link(root, "expert_placement")) return std::nullopt;
  const std::string full = "/expert_placement";
  StoredPlacement placement;
  Shape shape;
  placement.owners = reader.read_integers<int32_t>(root, "expert_placement", full, H5T_NATIVE_INT32, H5T_SGN_2, "int32", shape);
  if (shape.size() != 1 || shape[0] < 1) {
    reader.damaged("dataset " + full + " has shape " + shape_string(shape) + ", expected [E] with E >= 1");
  }
  const auto opened = reader.open_dataset(root, "expert_placement", full);
  placement.ep_size = reader.read_attribute<int32_t>(opened.dataset.get(), "ep_size", full, H5T_NATIVE_INT32);
  if (placement.ep_size < 1) {
    reader.damaged("attribute 'ep_size' on " + full + " is " + std::to_string(placement.ep_size) + ", expected >= 1");
  }
  for (size_t expert = 0; expert < placement.owners.size(); ++expert) {
    if (placement.owners[expert] < 0 || placement.owners[expert] >= placement.ep_size) {
      reader.damaged("dataset " + full + ": expert " + std::to_string(expert) + " is owned by rank " +
                     std::to_string(placement.owners[expert]) + ", expected a rank in [0, " +
                     std::to_string(placement.ep_size) + ")");
    }
  }
  return placement;
}

void refuse_non_finite(const Reader& reader, const Tensor& tensor, const std::string& dataset) {
  const int64_t bad = first_non_finite(tensor);
  if (bad >= 0) {
    reader.damaged("dataset " + dataset + " holds a non-finite value (element " + std::to_string(bad) + " is " +
                   std::to_string(tensor.data()[bad]) + "); a checkpoint holds finite values only");
  }
}

ParameterSetState read_parameter_set(const Reader& reader, hid_t sets, const std::string& name) {
  const std::string full = "/parameter_sets/" + name;
  Handle group = reader.open_group(sets, name, full);
  ParameterSetState set;
  set.name = name;
  const std::string optimizer = reader.read_text_attribute(group.get(), "optimizer", full);
  if (optimizer != "adamw" && optimizer != "none") {
    reader.damaged("attribute 'optimizer' on " + full + " is '" + optimizer + "', expected 'adamw' or 'none'");
  }
  set.has_optimizer = optimizer == "adamw";
  set.optimizer_step = reader.read_attribute<int64_t>(group.get(), "optimizer_step", full, H5T_NATIVE_INT64);
  for (const auto& parameter : reader.member_names(group.get(), full)) {
    const std::string parameter_path = full + "/" + parameter;
    Handle parameter_group = reader.open_group(group.get(), parameter, parameter_path);
    set.parameter_names.push_back(parameter);
    set.values.push_back(reader.read_tensor(parameter_group.get(), "value", parameter_path + "/value"));
    refuse_non_finite(reader, set.values.back(), parameter_path + "/value");
    if (set.has_optimizer) {
      for (const auto& [moment, list] : {std::pair{"exp_avg", &set.first_moments}, std::pair{"exp_avg_sq", &set.second_moments}}) {
        const std::string moment_path = parameter_path + "/" + moment;
        list->push_back(reader.read_tensor(parameter_group.get(), moment, moment_path));
        refuse_non_finite(reader, list->back(), moment_path);
        if (list->back().shape() != set.values.back().shape()) {
          reader.damaged("dataset " + moment_path + " has shape " + shape_string(list->back().shape()) +
                         ", expected the parameter's shape " + shape_string(set.values.back().shape()));
        }
      }
    }
  }
  return set;
}

// Bytes the file will take at least: every tensor's data, the texts, and HDF5's metadata (a
// generous 64 KiB plus 4 KiB per dataset).
uint64_t estimated_file_bytes(const Checkpoint& checkpoint) {
  uint64_t bytes = kHeaderBytes + (64u << 10) + checkpoint.config.size() + checkpoint.metrics.size();
  for (const auto& set : checkpoint.parameter_sets) {
    for (const auto* tensors : {&set.values, &set.first_moments, &set.second_moments}) {
      for (const Tensor& tensor : *tensors) bytes += static_cast<uint64_t>(tensor.numel()) * sizeof(float) + (4u << 10);
    }
  }
  return bytes;
}

// Refuses a write that cannot fit before any byte is written: a full disk is then a clear message
// and not a failure deep inside HDF5 (whose file would stay open, unflushable, to the end).
void check_free_space(const fs::path& path, uint64_t needed) {
  struct statvfs file_system {};
  const fs::path directory = path.has_parent_path() ? path.parent_path() : fs::path(".");
  if (::statvfs(directory.c_str(), &file_system) != 0) return;  // unknown: the write itself will tell
  const uint64_t available = static_cast<uint64_t>(file_system.f_bavail) * file_system.f_frsize;
  if (available < needed) {
    TEMOE_FAIL(path.string() << ": cannot write checkpoint: it needs about " << needed << " bytes and the file system of "
                             << directory.string() << " has " << available << " free");
  }
}

}  // namespace

void write_checkpoint_file(const fs::path& path, const Checkpoint& checkpoint) {
  validate(checkpoint);
  check_free_space(path, estimated_file_bytes(checkpoint));
  const hdf5::SilenceErrors silence;
  Writer writer(path);
  Handle file = writer.create_file();
  const hid_t root = file.get();
  writer.write_text_attribute(root, "format", kFormatName);
  writer.write_attribute(root, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT32, int32_t{kCheckpointFormatVersion});
  writer.write_attribute(root, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, checkpoint.step);
  writer.write_attribute(root, "tokens", H5T_STD_I64LE, H5T_NATIVE_INT64, checkpoint.tokens);
  writer.write_attribute(root, "world_size", H5T_STD_I32LE, H5T_NATIVE_INT32, int32_t{checkpoint.world_size()});
  writer.write_text_attribute(root, "model_architecture", checkpoint.model.architecture);
  writer.write_attribute(root, "model_fingerprint", H5T_STD_U64LE, H5T_NATIVE_UINT64, checkpoint.model.fingerprint);
  writer.write_text_dataset(root, "config", checkpoint.config);
  writer.write_text_dataset(root, "metrics", checkpoint.metrics);
  {
    Handle ranks = writer.create_group(root, "ranks");
    const int64_t world = checkpoint.world_size();
    const auto random = rank_matrix(checkpoint.ranks, &RankState::random_state);
    const auto positions = rank_matrix(checkpoint.ranks, &RankState::data_position);
    writer.write_dataset(ranks.get(), "random_state", H5T_STD_U64LE, H5T_NATIVE_UINT64,
                         {world, static_cast<int64_t>(checkpoint.ranks[0].random_state.size())}, random.data());
    writer.write_dataset(ranks.get(), "data_position", H5T_STD_I64LE, H5T_NATIVE_INT64,
                         {world, static_cast<int64_t>(checkpoint.ranks[0].data_position.size())}, positions.data());
  }
  if (checkpoint.expert_placement) {
    const StoredPlacement& placement = *checkpoint.expert_placement;
    writer.write_dataset(root, "expert_placement", H5T_STD_I32LE, H5T_NATIVE_INT32,
                         {static_cast<int64_t>(placement.owners.size())}, placement.owners.data());
    Handle dataset = writer.check(H5Dopen2(root, "expert_placement", H5P_DEFAULT), H5Dclose, "open dataset 'expert_placement'");
    writer.write_attribute(dataset.get(), "ep_size", H5T_STD_I32LE, H5T_NATIVE_INT32, int32_t{placement.ep_size});
  }
  Handle sets = writer.create_group(root, "parameter_sets");
  for (const auto& set : checkpoint.parameter_sets) {
    Handle group = writer.create_group(sets.get(), set.name);
    writer.write_text_attribute(group.get(), "optimizer", set.has_optimizer ? "adamw" : "none");
    writer.write_attribute(group.get(), "optimizer_step", H5T_STD_I64LE, H5T_NATIVE_INT64, set.optimizer_step);
    for (size_t i = 0; i < set.values.size(); ++i) {
      Handle parameter = writer.create_group(group.get(), set.parameter_names[i]);
      writer.write_tensor(parameter.get(), "value", set.values[i]);
      if (set.has_optimizer) {
        writer.write_tensor(parameter.get(), "exp_avg", set.first_moments[i]);
        writer.write_tensor(parameter.get(), "exp_avg_sq", set.second_moments[i]);
      }
    }
  }
  sets.close();
  if (H5Fflush(root, H5F_SCOPE_GLOBAL) < 0) writer.fail("flush");
  if (!file.close()) writer.fail("close");
  write_header(path, kCheckpointFormatVersion);
  fsync_file(path);
}

void reseal_checkpoint_file(const fs::path& path) {
  write_header(path, kCheckpointFormatVersion);
  fsync_file(path);
}

Checkpoint read_checkpoint_file(const fs::path& path) {
  const hdf5::SilenceErrors silence;
  const Reader reader(path);
  Handle file = reader.open_file();
  Handle root_group(H5Gopen2(file.get(), "/", H5P_DEFAULT), H5Gclose);
  if (!root_group.valid()) reader.damaged("cannot open the root group");
  const hid_t root = root_group.get();
  const std::string format = reader.read_text_attribute(root, "format", "/");
  if (format != kFormatName) {
    reader.refuse(CheckpointProblem::incompatible,
                  "not a temoe checkpoint: attribute 'format' is '" + format + "', expected '" + kFormatName + "'");
  }
  Checkpoint checkpoint;
  checkpoint.source = path;
  checkpoint.format_version = reader.read_attribute<int32_t>(root, "format_version", "/", H5T_NATIVE_INT32);
  if (checkpoint.format_version != kCheckpointFormatVersion) {
    reader.refuse(CheckpointProblem::incompatible,
                  "checkpoint format version " + std::to_string(checkpoint.format_version) + ", this build reads version " +
                      std::to_string(kCheckpointFormatVersion));
  }
  checkpoint.step = reader.read_attribute<int64_t>(root, "step", "/", H5T_NATIVE_INT64);
  checkpoint.tokens = reader.read_attribute<int64_t>(root, "tokens", "/", H5T_NATIVE_INT64);
  const auto world_size = reader.read_attribute<int32_t>(root, "world_size", "/", H5T_NATIVE_INT32);
  if (world_size < 1) reader.damaged("attribute 'world_size' is " + std::to_string(world_size) + ", expected >= 1");
  if (checkpoint.step < 0 || checkpoint.tokens < 0) reader.damaged("negative step or token count");
  checkpoint.model.architecture = reader.read_text_attribute(root, "model_architecture", "/");
  checkpoint.model.fingerprint = reader.read_attribute<uint64_t>(root, "model_fingerprint", "/", H5T_NATIVE_UINT64);
  checkpoint.config = reader.read_text(root, "config", "/config");
  checkpoint.metrics = reader.read_text(root, "metrics", "/metrics");
  read_ranks(reader, root, checkpoint, world_size);
  checkpoint.expert_placement = read_expert_placement(reader, root);
  Handle sets = reader.open_group(root, "parameter_sets", "/parameter_sets");
  for (const auto& name : reader.member_names(sets.get(), "/parameter_sets")) {
    checkpoint.parameter_sets.push_back(read_parameter_set(reader, sets.get(), name));
  }
  return checkpoint;
}

}  // namespace temoe
