#include "src/data/token_dataset.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <sstream>

#include "src/core/checked_size.hpp"
#include "src/core/error.hpp"
#include "src/data/hdf5_handles.hpp"
#include "src/io/run_directory_lock.hpp"

namespace temoe::data {

namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------------------------------------------
// Validation (shared by reading and writing)

void validate_offsets(const TokenDataset& dataset, const std::string& origin) {
  const auto& offsets = dataset.document_offsets;
  if (offsets.size() < 2) {
    TEMOE_FAIL(origin << ": /document_offsets has " << offsets.size()
                      << " entries; expected D + 1 >= 2 (at least one document)");
  }
  if (offsets.front() != 0) TEMOE_FAIL(origin << ": /document_offsets[0] = " << offsets.front() << "; expected 0");
  for (size_t index = 1; index < offsets.size(); ++index) {
    if (offsets[index] <= offsets[index - 1]) {
      TEMOE_FAIL(origin << ": /document_offsets is not increasing: [" << index - 1 << "] = " << offsets[index - 1]
                        << ", [" << index << "] = " << offsets[index] << " (every document needs at least one token)");
    }
  }
  const int64_t tokens = dataset.token_count();
  if (offsets.back() > tokens) {
    TEMOE_FAIL(origin << ": /document_offsets[" << offsets.size() - 1 << "] = " << offsets.back()
                      << " is past the end of /tokens (" << tokens << " tokens)");
  }
  if (offsets.back() < tokens) {
    TEMOE_FAIL(origin << ": the last document ends at " << offsets.back() << " but /tokens has " << tokens
                      << " tokens (tokens outside every document)");
  }
}

void validate_tokens(const TokenDataset& dataset, const std::string& origin) {
  if (dataset.vocab_size < 1 || dataset.vocab_size > std::numeric_limits<int32_t>::max()) {
    TEMOE_FAIL(origin << ": vocab_size = " << dataset.vocab_size << "; expected 1 to "
                      << std::numeric_limits<int32_t>::max());
  }
  for (size_t index = 0; index < dataset.tokens.size(); ++index) {
    const int32_t token = dataset.tokens[index];
    if (token < 0 || token >= dataset.vocab_size) {
      TEMOE_FAIL(origin << ": /tokens[" << index << "] = " << token << " is outside [0, vocab_size = "
                        << dataset.vocab_size << ")");
    }
  }
}

void validate_topics(const TokenDataset& dataset, const std::string& origin) {
  if (dataset.topics.empty()) {
    if (dataset.topic_count != 0) {
      TEMOE_FAIL(origin << ": topic_count = " << dataset.topic_count << " but there are no topic labels (/topics)");
    }
    return;
  }
  if (dataset.topics.size() != dataset.tokens.size()) {
    TEMOE_FAIL(origin << ": /topics has " << dataset.topics.size() << " labels but /tokens has "
                      << dataset.tokens.size() << " tokens; expected one label per token");
  }
  if (dataset.topic_count < 1 || dataset.topic_count > std::numeric_limits<int16_t>::max()) {
    TEMOE_FAIL(origin << ": topic_count = " << dataset.topic_count << "; expected 1 to "
                      << std::numeric_limits<int16_t>::max() << " when /topics is present");
  }
  for (size_t index = 0; index < dataset.topics.size(); ++index) {
    const int16_t topic = dataset.topics[index];
    if (topic < 0 || topic >= dataset.topic_count) {
      TEMOE_FAIL(origin << ": /topics[" << index << "] = " << topic << " is outside [0, topic_count = "
                        << dataset.topic_count << ")");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

Hdf5Handle make_dataspace(hsize_t elements) {
  return Hdf5Handle(H5Screate_simple(1, &elements, nullptr), H5Sclose);
}

template <typename T>
void write_vector(hid_t file, const std::string& origin, const char* name, hid_t file_type, hid_t memory_type,
                  const std::vector<T>& values) {
  // No modification times in the object header, so that identical data give identical bytes.
  Hdf5Handle properties(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (!properties.valid() || H5Pset_obj_track_times(properties.get(), 0) < 0) {
    TEMOE_FAIL(origin << ": cannot set up the creation properties of " << name);
  }
  const Hdf5Handle space = make_dataspace(values.size());
  const Hdf5Handle dataset(
      H5Dcreate2(file, name, file_type, space.get(), H5P_DEFAULT, properties.get(), H5P_DEFAULT), H5Dclose);
  if (!dataset.valid()) TEMOE_FAIL(origin << ": cannot create dataset " << name);
  if (H5Dwrite(dataset.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) < 0) {
    TEMOE_FAIL(origin << ": cannot write dataset " << name << " (" << values.size() << " values)");
  }
}

void write_integer_attribute(hid_t file, const std::string& origin, const char* name, int64_t value) {
  const Hdf5Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  const Hdf5Handle attribute(H5Acreate2(file, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!attribute.valid() || H5Awrite(attribute.get(), H5T_NATIVE_INT64, &value) < 0) {
    TEMOE_FAIL(origin << ": cannot write attribute " << name);
  }
}

void write_string_attribute(hid_t file, const std::string& origin, const char* name, const std::string& value) {
  // A fixed-length, null-padded string (h5py reads it as bytes; h5dump prints it).
  const Hdf5Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  if (!type.valid() || H5Tset_size(type.get(), value.empty() ? 1 : value.size()) < 0 ||
      H5Tset_strpad(type.get(), H5T_STR_NULLPAD) < 0 || H5Tset_cset(type.get(), H5T_CSET_UTF8) < 0) {
    TEMOE_FAIL(origin << ": cannot make the string type of attribute " << name);
  }
  const std::string padded = value.empty() ? std::string(1, '\0') : value;
  const Hdf5Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  const Hdf5Handle attribute(H5Acreate2(file, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!attribute.valid() || H5Awrite(attribute.get(), type.get(), padded.data()) < 0) {
    TEMOE_FAIL(origin << ": cannot write attribute " << name);
  }
}

void fsync_path(const fs::path& path, bool directory) {
  const int descriptor = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (descriptor < 0) TEMOE_FAIL(path.string() << ": cannot open for fsync: " << std::strerror(errno));
  const int status = ::fsync(descriptor);
  ::close(descriptor);
  if (status != 0) TEMOE_FAIL(path.string() << ": fsync failed: " << std::strerror(errno));
}

void write_hdf5_file(const fs::path& temporary, const std::string& origin, const TokenDataset& dataset) {
  Hdf5Handle creation(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
  if (!creation.valid() || H5Pset_obj_track_times(creation.get(), 0) < 0) {
    TEMOE_FAIL(origin << ": cannot set up the file creation properties");
  }
  Hdf5Handle file(H5Fcreate(temporary.c_str(), H5F_ACC_TRUNC, creation.get(), H5P_DEFAULT), H5Fclose);
  if (!file.valid()) {
    TEMOE_FAIL(origin << ": cannot create the temporary file " << temporary.string() << " (does the directory exist "
                      << "and is it writable?)");
  }
  write_integer_attribute(file.get(), origin, "format_version", kTokenDataFormatVersion);
  write_integer_attribute(file.get(), origin, "vocab_size", dataset.vocab_size);
  write_string_attribute(file.get(), origin, "generator", dataset.generator);
  write_vector(file.get(), origin, "tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, dataset.tokens);
  write_vector(file.get(), origin, "document_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, dataset.document_offsets);
  if (dataset.has_topics()) {
    write_integer_attribute(file.get(), origin, "topic_count", dataset.topic_count);
    write_vector(file.get(), origin, "topics", H5T_STD_I16LE, H5T_NATIVE_INT16, dataset.topics);
  }
  if (H5Fflush(file.get(), H5F_SCOPE_GLOBAL) < 0) TEMOE_FAIL(temporary.string() << ": HDF5 flush failed");
  if (file.close() < 0) TEMOE_FAIL(temporary.string() << ": HDF5 close failed");
}

// ---------------------------------------------------------------------------------------------
// Reading

std::string describe_type(hid_t type) {
  switch (H5Tget_class(type)) {
    case H5T_INTEGER: {
      const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
      return (is_signed ? "int" : "uint") + std::to_string(8 * H5Tget_size(type));
    }
    case H5T_FLOAT:
      return "float" + std::to_string(8 * H5Tget_size(type));
    case H5T_STRING:
      return "string";
    case H5T_COMPOUND:
      return "compound";
    case H5T_ENUM:
      return "enum";
    case H5T_ARRAY:
      return "array";
    case H5T_VLEN:
      return "variable-length sequence";
    default:
      return "an unsupported HDF5 type";
  }
}

bool is_signed_integer(hid_t type, size_t bytes) {
  return H5Tget_class(type) == H5T_INTEGER && H5Tget_sign(type) == H5T_SGN_2 && H5Tget_size(type) == bytes;
}

std::string describe_shape(hid_t space) {
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0) return "an unreadable shape";
  std::vector<hsize_t> dimensions(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space, dimensions.data(), nullptr);
  std::ostringstream text;
  text << "[";
  for (size_t index = 0; index < dimensions.size(); ++index) text << (index ? ", " : "") << dimensions[index];
  text << "]";
  return text.str();
}

bool has_link(hid_t file, const char* name) { return H5Lexists(file, name, H5P_DEFAULT) > 0; }

// deflate, the filter h5py users compress with, expands at most 1032-fold (zlib's technical
// details, "Maximum compression factor"); other filters compress less.
constexpr uint64_t kMaximumCompressionRatio = 1032;

// Refuses, before anything is allocated, a dataset whose header claims more data than the file can
// hold: a 100-byte file must not make the reader ask for 160 GB. Without filters every byte of the
// data is in the file; with compression at most kMaximumCompressionRatio times the file size.
void check_stored_size(hid_t file, hid_t dataset, const std::string& origin, const char* name, hsize_t elements,
                       size_t element_bytes) {
  const std::string what = origin + ": /" + name;
  if (elements > static_cast<hsize_t>(std::numeric_limits<int64_t>::max())) {
    TEMOE_FAIL(what << " has shape [" << elements << "]; expected at most " << std::numeric_limits<int64_t>::max()
                    << " elements");
  }
  const int64_t count = static_cast<int64_t>(elements);
  const auto bytes = static_cast<uint64_t>(checked_bytes(std::span<const int64_t>(&count, 1),
                                                         static_cast<int64_t>(element_bytes), what));
  hsize_t file_bytes = 0;
  if (H5Fget_filesize(file, &file_bytes) < 0) TEMOE_FAIL(origin << ": cannot determine the file size");
  const Hdf5Handle properties(H5Dget_create_plist(dataset), H5Pclose);
  const int filters = properties.valid() ? H5Pget_nfilters(properties.get()) : 0;
  const uint64_t ratio = filters > 0 ? kMaximumCompressionRatio : 1;
  if (bytes / ratio > file_bytes) {
    TEMOE_FAIL(what << " has shape [" << elements << "] of " << element_bytes << "-byte integers (" << bytes
                    << " bytes), but the file has only " << file_bytes << " bytes"
                    << (filters > 0 ? " (more than deflate's maximum compression could expand)" : "")
                    << "; the dataset header is corrupt or the file is truncated");
  }
}

// Reads a one-dimensional dataset of signed integers as wide as T into native T (either byte order).
template <typename T>
std::vector<T> read_vector(hid_t file, const std::string& origin, const char* name, hid_t memory_type,
                           const char* expected_dtype) {
  if (!has_link(file, name)) TEMOE_FAIL(origin << ": no dataset /" << name << " (expected " << expected_dtype << " [N])");
  const Hdf5Handle dataset(H5Dopen2(file, name, H5P_DEFAULT), H5Dclose);
  if (!dataset.valid()) TEMOE_FAIL(origin << ": /" << name << " is not a dataset");
  const Hdf5Handle type(H5Dget_type(dataset.get()), H5Tclose);
  if (!type.valid() || !is_signed_integer(type.get(), sizeof(T))) {
    TEMOE_FAIL(origin << ": /" << name << " has dtype " << (type.valid() ? describe_type(type.get()) : "unknown")
                      << "; expected " << expected_dtype);
  }
  const Hdf5Handle space(H5Dget_space(dataset.get()), H5Sclose);
  if (!space.valid() || H5Sget_simple_extent_type(space.get()) != H5S_SIMPLE ||
      H5Sget_simple_extent_ndims(space.get()) != 1) {
    TEMOE_FAIL(origin << ": /" << name << " has shape " << (space.valid() ? describe_shape(space.get()) : "unknown")
                      << "; expected one dimension");
  }
  hsize_t elements = 0;
  H5Sget_simple_extent_dims(space.get(), &elements, nullptr);
  check_stored_size(file, dataset.get(), origin, name, elements, sizeof(T));
  std::vector<T> values(elements);
  if (elements > 0 && H5Dread(dataset.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) < 0) {
    TEMOE_FAIL(origin << ": cannot read /" << name << " (" << elements << " values)");
  }
  return values;
}

// H5Aexists fails (rather than answering no) when the attribute is there but cannot be decoded: a
// damaged attribute is refused, not taken for an absent one (which would silently use a default).
bool has_attribute(hid_t file, const std::string& origin, const char* name) {
  const htri_t exists = H5Aexists(file, name);
  if (exists < 0) TEMOE_FAIL(origin << ": attribute '" << name << "' on the root group cannot be read (damaged file?)");
  return exists > 0;
}

int64_t read_integer_attribute(hid_t file, const std::string& origin, const char* name) {
  if (!has_attribute(file, origin, name)) TEMOE_FAIL(origin << ": no attribute '" << name << "' on the root group");
  const Hdf5Handle attribute(H5Aopen(file, name, H5P_DEFAULT), H5Aclose);
  const Hdf5Handle type(H5Aget_type(attribute.get()), H5Tclose);
  const Hdf5Handle space(H5Aget_space(attribute.get()), H5Sclose);
  if (!attribute.valid() || !type.valid() || H5Tget_class(type.get()) != H5T_INTEGER) {
    TEMOE_FAIL(origin << ": attribute '" << name << "' has type "
                      << (type.valid() ? describe_type(type.get()) : "unknown") << "; expected an integer");
  }
  if (!space.valid() || H5Sget_simple_extent_npoints(space.get()) != 1) {
    TEMOE_FAIL(origin << ": attribute '" << name << "' is not a single value");
  }
  int64_t value = 0;
  if (H5Aread(attribute.get(), H5T_NATIVE_INT64, &value) < 0) {
    TEMOE_FAIL(origin << ": cannot read attribute '" << name << "' as a 64-bit integer");
  }
  return value;
}

// Fixed-length (what temoe writes) or variable-length (what h5py writes for a Python str).
std::string read_string_attribute(hid_t file, const std::string& origin, const char* name) {
  const Hdf5Handle attribute(H5Aopen(file, name, H5P_DEFAULT), H5Aclose);
  const Hdf5Handle type(H5Aget_type(attribute.get()), H5Tclose);
  const Hdf5Handle space(H5Aget_space(attribute.get()), H5Sclose);
  if (!attribute.valid() || !type.valid() || H5Tget_class(type.get()) != H5T_STRING) {
    TEMOE_FAIL(origin << ": attribute '" << name << "' has type "
                      << (type.valid() ? describe_type(type.get()) : "unknown") << "; expected a string");
  }
  if (!space.valid() || H5Sget_simple_extent_npoints(space.get()) != 1) {
    TEMOE_FAIL(origin << ": attribute '" << name << "' is not a single string");
  }
  if (H5Tis_variable_str(type.get()) > 0) {
    const Hdf5Handle memory_type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(memory_type.get(), H5T_VARIABLE);
    H5Tset_cset(memory_type.get(), H5Tget_cset(type.get()));
    char* text = nullptr;
    if (H5Aread(attribute.get(), memory_type.get(), &text) < 0 || text == nullptr) {
      TEMOE_FAIL(origin << ": cannot read attribute '" << name << "'");
    }
    std::string value(text);
    H5free_memory(text);
    return value;
  }
  const size_t size = H5Tget_size(type.get());
  std::string value(size, '\0');
  if (H5Aread(attribute.get(), type.get(), value.data()) < 0) {
    TEMOE_FAIL(origin << ": cannot read attribute '" << name << "'");
  }
  const size_t end = value.find('\0');
  if (end != std::string::npos) value.resize(end);
  return value;
}

Hdf5Handle open_for_reading(const fs::path& path) {
  const std::string origin = path.string();
  std::error_code error;
  const auto status = fs::status(path, error);
  if (!fs::exists(status)) TEMOE_FAIL(origin << ": no such file (expected a temoe token-data HDF5 file)");
  if (fs::is_directory(status)) TEMOE_FAIL(origin << ": is a directory, not a token-data HDF5 file");
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 <= 0) {
    TEMOE_FAIL(origin << ": not an HDF5 file (" << (is_hdf5 == 0 ? "no HDF5 signature" : "cannot be read")
                      << "; expected a temoe token-data file with /tokens and /document_offsets)");
  }
  Hdf5Handle access(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
#if H5_VERSION_GE(1, 10, 7)
  // Token files are replaced by rename, never modified in place; locks only fail on some
  // cluster file systems.
  if (access.valid()) H5Pset_file_locking(access.get(), 0, 1);
#endif
  Hdf5Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, access.valid() ? access.get() : H5P_DEFAULT), H5Fclose);
  if (!file.valid()) TEMOE_FAIL(origin << ": cannot open the HDF5 file for reading (damaged or cut short?)");
  return file;
}

}  // namespace

void validate_token_dataset(const TokenDataset& dataset, const std::string& origin) {
  validate_offsets(dataset, origin);
  validate_tokens(dataset, origin);
  validate_topics(dataset, origin);
}

void write_token_dataset(const fs::path& path, const TokenDataset& dataset) {
  const std::string origin = path.string();
  validate_token_dataset(dataset, origin);
  const Hdf5QuietErrors quiet;
  const fs::path directory = path.has_parent_path() ? path.parent_path() : fs::path(".");
  const fs::path temporary = directory / ("." + path.filename().string() + ".tmp-" + temporary_suffix());
  try {
    write_hdf5_file(temporary, origin, dataset);
    fsync_path(temporary, false);
    fs::rename(temporary, path);
    fsync_path(directory, true);
  } catch (...) {
    std::error_code ignored;
    fs::remove(temporary, ignored);
    throw;
  }
}

TokenDataset read_token_dataset(const fs::path& path) {
  const std::string origin = path.string();
  const Hdf5QuietErrors quiet;
  const Hdf5Handle file = open_for_reading(path);
  TokenDataset dataset;
  dataset.path = path;
  if (!has_attribute(file.get(), origin, "format_version")) {
    TEMOE_FAIL(origin << ": no attribute 'format_version' on the root group: not a temoe token-data file");
  }
  const int64_t version = read_integer_attribute(file.get(), origin, "format_version");
  if (version != kTokenDataFormatVersion) {
    TEMOE_FAIL(origin << ": format_version " << version << " is not supported (this temoe reads version "
                      << kTokenDataFormatVersion << ")");
  }
  dataset.vocab_size = read_integer_attribute(file.get(), origin, "vocab_size");
  if (has_attribute(file.get(), origin, "generator")) dataset.generator = read_string_attribute(file.get(), origin, "generator");
  dataset.tokens = read_vector<int32_t>(file.get(), origin, "tokens", H5T_NATIVE_INT32, "int32");
  dataset.document_offsets =
      read_vector<int64_t>(file.get(), origin, "document_offsets", H5T_NATIVE_INT64, "int64");
  if (has_link(file.get(), "topics")) {
    dataset.topic_count = read_integer_attribute(file.get(), origin, "topic_count");
    dataset.topics = read_vector<int16_t>(file.get(), origin, "topics", H5T_NATIVE_INT16, "int16");
  }
  validate_token_dataset(dataset, origin);
  return dataset;
}

}  // namespace temoe::data
