#pragma once
// One checkpoint as one HDF5 file (layout: src/checkpoint/README.md). Two layers of checksums: a
// 512-byte text header (an HDF5 user block, which HDF5 tools skip) holds the length and a 64-bit
// hash of everything after it, checked before HDF5 parses anything, so truncation and a flipped
// byte anywhere are refused with a precise message; and inside, every dataset is chunked with
// HDF5's Fletcher32 filter and the metadata use the v1.10 object format (checksummed blocks), so
// that h5py and h5dump users are protected too.
#include <filesystem>

#include "src/checkpoint/checkpoint.hpp"
#include "src/checkpoint/checkpoint_error.hpp"

namespace temoe {

// Writes `checkpoint` to `path` (created or truncated) and fsyncs it. Not atomic by itself:
// CheckpointDirectory::commit writes to a temporary name and renames.
void write_checkpoint_file(const std::filesystem::path& path, const Checkpoint& checkpoint);

// Reads and verifies every dataset and attribute (checksums, shapes, types, counts). Throws
// CheckpointError naming the file, what is wrong and what was expected: missing (no such file),
// damaged (truncated, checksum, missing or malformed object) or incompatible (format version).
Checkpoint read_checkpoint_file(const std::filesystem::path& path);

// Recomputes the header of a checkpoint whose HDF5 content was edited on purpose (with h5py or
// the HDF5 API); the file is then verified against its new content. Tests use it to reach the
// checks inside the HDF5 content.
void reseal_checkpoint_file(const std::filesystem::path& path);

}  // namespace temoe
