// HDF5 checkpoint files: a bit-exact round trip, restoring into live parameters and optimizer
// (after which training continues bit for bit), and every refusal of issue 5 point 6 with a
// message that names the file, what is wrong and what was expected.
#include <hdf5.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "src/checkpoint/checkpoint_file.hpp"
#include "tests/unit/checkpoint_test_support.hpp"

namespace temoe {
namespace {

using namespace checkpoint_testing;

class CheckpointFile : public ScratchDirectory {
 protected:
  void SetUp() override {
    ScratchDirectory::SetUp();
    live_ = make_live_state();
    original_ = make_sample_checkpoint(*live_);
    file_ = path("ckpt-42.h5");
    write_checkpoint_file(file_, original_);
  }

  // Reads `file` expecting a refusal; returns it for the message checks.
  CheckpointError expect_refusal(const fs::path& file, CheckpointProblem problem) {
    try {
      read_checkpoint_file(file);
    } catch (const CheckpointError& error) {
      EXPECT_EQ(error.problem(), problem) << error.what();
      EXPECT_NE(std::string(error.what()).find(file.string()), std::string::npos) << error.what();
      return error;
    }
    ADD_FAILURE() << file << " was read although it should have been refused";
    return CheckpointError(problem, "");
  }

  // Rewrites an integer attribute of the root group in place with the HDF5 API.
  void set_root_attribute(const char* name, int32_t value) {
    const hid_t file = H5Fopen(file_.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(file, 0);
    const hid_t attribute = H5Aopen_by_name(file, "/", name, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(attribute, 0);
    EXPECT_GE(H5Awrite(attribute, H5T_NATIVE_INT32, &value), 0);
    H5Aclose(attribute);
    H5Fclose(file);
  }

  // File offset of the first chunk of a dataset (where its data bytes start). HDF5 addresses
  // count from the end of the user block.
  haddr_t chunk_offset(const std::string& dataset_path) {
    const hid_t file = H5Fopen(file_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    const hid_t creation = H5Fget_create_plist(file);
    hsize_t user_block = 0;
    EXPECT_GE(H5Pget_userblock(creation, &user_block), 0);
    EXPECT_EQ(user_block, 512u);
    H5Pclose(creation);
    const hid_t dataset = H5Dopen2(file, dataset_path.c_str(), H5P_DEFAULT);
    const hid_t space = H5Dget_space(dataset);
    haddr_t address = HADDR_UNDEF;
    hsize_t size = 0;
    EXPECT_GE(H5Dget_chunk_info(dataset, space, 0, nullptr, nullptr, &address, &size), 0);
    H5Sclose(space);
    H5Dclose(dataset);
    H5Fclose(file);
    return address + user_block;
  }

  std::unique_ptr<LiveState> live_;
  Checkpoint original_;
  fs::path file_;
};

TEST_F(CheckpointFile, RoundTripIsBitExact) {
  const Checkpoint loaded = read_checkpoint_file(file_);
  expect_same_checkpoint(loaded, original_);
  EXPECT_EQ(loaded.source, file_);
  EXPECT_EQ(loaded.world_size(), 3);
  EXPECT_EQ(loaded.parameter_set("controller").values[2].shape(), Shape{});       // rank 0 survives
  EXPECT_EQ(loaded.parameter_set("controller").values[3].shape(), (Shape{0, 3}));  // and so does empty
}

TEST_F(CheckpointFile, DetachedCopyDoesNotFollowLiveParameters) {
  const Checkpoint snapshot = original_.detached();
  live_->controller.get("layer0.termination.w1").value.data()[0] = 99.0f;
  EXPECT_EQ(original_.parameter_set("controller").values[0].data()[0], 99.0f);  // a view of the live tensor
  EXPECT_NE(snapshot.parameter_set("controller").values[0].data()[0], 99.0f);
}

// Resume at the optimizer level: restoring into fresh objects and taking one more step gives the
// same bits as the uninterrupted objects taking that step.
TEST_F(CheckpointFile, RestoreThenStepMatchesUninterrupted) {
  const Checkpoint loaded = read_checkpoint_file(file_);
  auto fresh = std::make_unique<LiveState>();
  for (const auto& parameter : live_->controller.parameters()) fresh->controller.add(parameter.name, parameter.value.shape());
  fresh->critic.add("value_head", {5});
  AdamW optimizer(fresh->controller, live_->optimizer->config());
  restore_parameter_set(loaded, "controller", fresh->controller, &optimizer);
  restore_parameter_set(loaded, "critic", fresh->critic, nullptr);
  EXPECT_EQ(optimizer.step_count(), 2);
  EXPECT_TRUE(same_bits(fresh->critic.get("value_head").value, live_->critic.get("value_head").value));

  make_gradients(live_->controller, 3.0f);
  make_gradients(fresh->controller, 3.0f);
  live_->optimizer->step(5e-3);
  optimizer.step(5e-3);
  for (size_t i = 0; i < live_->controller.parameters().size(); ++i) {
    EXPECT_TRUE(same_bits(fresh->controller.parameters()[i].value, live_->controller.parameters()[i].value));
    EXPECT_TRUE(same_bits(optimizer.first_moments()[i], live_->optimizer->first_moments()[i]));
    EXPECT_TRUE(same_bits(optimizer.second_moments()[i], live_->optimizer->second_moments()[i]));
  }
}

TEST_F(CheckpointFile, RefusesTruncatedFile) {
  const auto bytes = read_bytes(file_);
  for (const size_t keep : {bytes.size() - 1, bytes.size() - 100, bytes.size() / 2, size_t{600}, size_t{10}, size_t{0}}) {
    const fs::path truncated = path("truncated-" + std::to_string(keep) + ".h5");
    write_bytes(truncated, std::vector<char>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(keep)));
    const auto error = expect_refusal(truncated, CheckpointProblem::damaged);
    EXPECT_NE(std::string(error.what()).find("damaged checkpoint"), std::string::npos) << error.what();
  }
  const auto error = expect_refusal(path("truncated-" + std::to_string(bytes.size() / 2) + ".h5"), CheckpointProblem::damaged);
  EXPECT_NE(std::string(error.what()).find("truncated: the file has " + std::to_string(bytes.size() / 2) +
                                           " bytes, its header promises " + std::to_string(bytes.size())),
            std::string::npos)
      << error.what();
  const auto short_error = expect_refusal(path("truncated-10.h5"), CheckpointProblem::damaged);
  EXPECT_NE(std::string(short_error.what()).find("truncated or not a checkpoint: 10 bytes"), std::string::npos)
      << short_error.what();
}

// A flipped byte in tensor data is caught by the whole-file hash, before HDF5 reads anything.
TEST_F(CheckpointFile, RefusesFlippedByteInTensorData) {
  const std::string dataset = "/parameter_sets/controller/layer1.selection.w/exp_avg_sq";
  const haddr_t offset = chunk_offset(dataset);
  auto bytes = read_bytes(file_);
  ASSERT_LT(offset + 5, bytes.size());
  bytes[offset + 5] ^= 0x10;
  write_bytes(file_, bytes);
  const auto error = expect_refusal(file_, CheckpointProblem::damaged);
  EXPECT_NE(std::string(error.what()).find("content checksum mismatch"), std::string::npos) << error.what();
}

// The same flip with the header recomputed (as if the damage happened before the hash was taken):
// HDF5's Fletcher32 checksum of the chunk catches it, and the message names the dataset.
TEST_F(CheckpointFile, RefusesFlippedByteBehindTheFileHashByDatasetChecksum) {
  const std::string dataset = "/parameter_sets/controller/layer1.selection.w/exp_avg_sq";
  const haddr_t offset = chunk_offset(dataset);
  auto bytes = read_bytes(file_);
  bytes[offset + 5] ^= 0x10;
  write_bytes(file_, bytes);
  reseal_checkpoint_file(file_);
  const auto error = expect_refusal(file_, CheckpointProblem::damaged);
  EXPECT_NE(std::string(error.what()).find("dataset " + dataset), std::string::npos) << error.what();
  EXPECT_NE(std::string(error.what()).find("checksum"), std::string::npos) << error.what();
}

// Bytes of the file flipped one at a time (each of the first KiB: header and HDF5 superblock,
// then every 5th): every one is refused.
TEST_F(CheckpointFile, FlippedByteAnywhereIsRefused) {
  const auto bytes = read_bytes(file_);
  const fs::path damaged = path("damaged.h5");
  size_t refused = 0, tried = 0;
  for (size_t offset = 0; offset < bytes.size(); offset += offset < 1024 ? 1 : 5) {
    ++tried;
    auto copy = bytes;
    copy[offset] = static_cast<char>(copy[offset] ^ 0x04);
    write_bytes(damaged, copy);
    try {
      read_checkpoint_file(damaged);
      ADD_FAILURE() << "a flip at byte " << offset << " was not caught";
      break;
    } catch (const CheckpointError&) {
      ++refused;
    }
  }
  std::printf("[ info     ] %zu-byte checkpoint: %zu single-byte flips, %zu refused\n", bytes.size(), tried, refused);
  EXPECT_EQ(refused, tried);
}

// The HDF5 content alone (header recomputed after each flip): every flip is refused by a
// checksum inside HDF5 or leaves the content exactly as written (unused bytes). Sampled, and run
// in a child process, because HDF5 1.10 keeps some internal state of a few damaged files open
// (it complains about it when the process exits).
TEST_F(CheckpointFile, FlippedByteInsideHdf5IsCaughtOrHarmless) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const auto bytes = read_bytes(file_);
  const fs::path damaged = path("damaged.h5");
  auto sweep = [&] {
    int caught = 0, harmless = 0;
    for (size_t offset = 512 + 7; offset < bytes.size(); offset += 37) {
      auto copy = bytes;
      copy[offset] = static_cast<char>(copy[offset] ^ 0x04);
      write_bytes(damaged, copy);
      reseal_checkpoint_file(damaged);
      try {
        Checkpoint loaded = read_checkpoint_file(damaged);
        loaded.source = file_;
        expect_same_checkpoint(loaded, original_);
        if (HasFailure()) {
          std::fprintf(stderr, "a flip at byte %zu changed the content without being caught\n", offset);
          std::_Exit(1);
        }
        ++harmless;
      } catch (const CheckpointError&) {
        ++caught;
      }
    }
    std::fprintf(stderr, "HDF5 checksums alone, every 37th byte flipped: %d refused, %d harmless (unused bytes)\n",
                 caught, harmless);
    std::error_code ignored;
    fs::remove_all(directory_, ignored);  // the child process skips TearDown
    std::_Exit(caught > harmless ? 0 : 2);
  };
  EXPECT_EXIT(sweep(), ::testing::ExitedWithCode(0), "refused");
}

TEST_F(CheckpointFile, RefusesWrongFormatVersion) {
  // In the header, as a future version would write it.
  auto bytes = read_bytes(file_);
  const std::string line = "format_version 1";
  const auto at = std::search(bytes.begin(), bytes.end(), line.begin(), line.end());
  ASSERT_NE(at, bytes.end());
  *(at + static_cast<std::ptrdiff_t>(line.size()) - 1) = '2';
  write_bytes(file_, bytes);
  auto error = expect_refusal(file_, CheckpointProblem::incompatible);
  EXPECT_NE(std::string(error.what()).find("format version 2, this build reads version 1"), std::string::npos)
      << error.what();
  // And in the HDF5 attribute, behind a consistent header.
  write_checkpoint_file(file_, original_);
  set_root_attribute("format_version", 2);
  reseal_checkpoint_file(file_);
  error = expect_refusal(file_, CheckpointProblem::incompatible);
  EXPECT_NE(std::string(error.what()).find("format version 2, this build reads version 1"), std::string::npos)
      << error.what();
}

TEST_F(CheckpointFile, RefusesCheckpointOfAnotherModel) {
  const Checkpoint loaded = read_checkpoint_file(file_);
  EXPECT_NO_THROW(check_model_identity(loaded, sample_model()));
  ModelIdentity other = sample_model();
  other.fingerprint = fingerprint_weights({{"layers.0.w", {4, 9}}});
  try {
    check_model_identity(loaded, other);
    ADD_FAILURE() << "another model's checkpoint was accepted";
  } catch (const CheckpointError& error) {
    EXPECT_EQ(error.problem(), CheckpointProblem::incompatible);
    const std::string message = error.what();
    EXPECT_NE(message.find(file_.string()), std::string::npos) << message;
    EXPECT_NE(message.find("another model"), std::string::npos) << message;
  }
  other = sample_model();
  other.architecture = "olmoe L2 E4 k2";
  EXPECT_THROW(check_model_identity(loaded, other), CheckpointError);
}

TEST_F(CheckpointFile, RefusesAnotherParameterShapeWithoutTouchingTheLiveState) {
  const Checkpoint loaded = read_checkpoint_file(file_);
  ParameterSet other;
  other.add("layer0.termination.w1", {3, 4});
  other.add("layer0.termination.b1", {4});
  other.add("temperature", {});
  other.add("unused", {0, 3});
  other.add("layer1.selection.w", {2, 3, 3});  // stored as [2, 3, 2]
  AdamW optimizer(other, AdamWConfig{});
  try {
    restore_parameter_set(loaded, "controller", other, &optimizer);
    ADD_FAILURE() << "a parameter of another shape was accepted";
  } catch (const CheckpointError& error) {
    EXPECT_EQ(error.problem(), CheckpointProblem::incompatible);
    const std::string message = error.what();
    EXPECT_NE(message.find(file_.string()), std::string::npos) << message;
    EXPECT_NE(message.find("'layer1.selection.w' has shape [2, 3, 2], this run expects [2, 3, 3]"), std::string::npos)
        << message;
  }
  EXPECT_EQ(other.get("layer0.termination.w1").value.data()[0], 0.0f);  // untouched
  EXPECT_EQ(optimizer.step_count(), 0);

  ParameterSet renamed;
  renamed.add("layer0.termination.w2", {3, 4});
  EXPECT_THROW(restore_parameter_set(loaded, "controller", renamed, nullptr), CheckpointError);
  ParameterSet critic;
  critic.add("value_head", {5});
  AdamW critic_optimizer(critic, AdamWConfig{});
  EXPECT_THROW(restore_parameter_set(loaded, "critic", critic, &critic_optimizer), CheckpointError);  // no moments stored
  EXPECT_THROW(restore_parameter_set(loaded, "selector", critic, nullptr), CheckpointError);
}

TEST_F(CheckpointFile, RefusesMissingDataset) {
  for (const std::string dataset : {"/ranks/random_state", "/config", "/parameter_sets/controller/temperature/exp_avg"}) {
    write_checkpoint_file(file_, original_);
    const hid_t file = H5Fopen(file_.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(file, 0);
    ASSERT_GE(H5Ldelete(file, dataset.c_str(), H5P_DEFAULT), 0);
    H5Fclose(file);
    reseal_checkpoint_file(file_);
    const auto error = expect_refusal(file_, CheckpointProblem::damaged);
    EXPECT_NE(std::string(error.what()).find("missing dataset " + dataset), std::string::npos) << error.what();
  }
}

// The expert placement of an expert-parallel run is optional: it round-trips; a file without it (as
// every file written before placements were recorded) loads without one; an owner outside
// [0, ep_size) is refused on write and, naming the expert, on read.
TEST_F(CheckpointFile, ExpertPlacementRoundTripsAndIsOptional) {
  EXPECT_FALSE(read_checkpoint_file(file_).expert_placement.has_value());
  Checkpoint placed = original_;
  placed.expert_placement = StoredPlacement{2, {1, 0, 0, 1}};
  write_checkpoint_file(file_, placed);
  expect_same_checkpoint(read_checkpoint_file(file_), placed);

  const hid_t file = H5Fopen(file_.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  const hid_t dataset = H5Dopen2(file, "/expert_placement", H5P_DEFAULT);
  ASSERT_GE(dataset, 0);
  const int32_t owners[] = {1, 0, 0, 5};
  EXPECT_GE(H5Dwrite(dataset, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, owners), 0);
  H5Dclose(dataset);
  H5Fclose(file);
  reseal_checkpoint_file(file_);
  const auto error = expect_refusal(file_, CheckpointProblem::damaged);
  EXPECT_NE(std::string(error.what()).find("/expert_placement: expert 3 is owned by rank 5, expected a rank in [0, 2)"),
            std::string::npos)
      << error.what();

  write_checkpoint_file(file_, placed);
  const hid_t again = H5Fopen(file_.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(again, 0);
  ASSERT_GE(H5Ldelete(again, "/expert_placement", H5P_DEFAULT), 0);
  H5Fclose(again);
  reseal_checkpoint_file(file_);
  expect_same_checkpoint(read_checkpoint_file(file_), original_);

  placed.expert_placement = StoredPlacement{2, {0, 2}};
  EXPECT_THROW(write_checkpoint_file(path("bad.h5"), placed), Error);
  placed.expert_placement = StoredPlacement{2, {}};
  EXPECT_THROW(write_checkpoint_file(path("bad.h5"), placed), Error);
}

TEST_F(CheckpointFile, RefusesMissingEmptyAndForeignFiles) {
  const auto missing = expect_refusal(path("ckpt-7.h5"), CheckpointProblem::missing);
  EXPECT_NE(std::string(missing.what()).find("no such checkpoint file"), std::string::npos);
  write_bytes(path("empty.h5"), {});
  const auto empty = expect_refusal(path("empty.h5"), CheckpointProblem::damaged);
  EXPECT_NE(std::string(empty.what()).find("empty"), std::string::npos);
  const std::string text = "this is not HDF5 at all, just some text that happens to be long enough to look like a file";
  write_bytes(path("text.h5"), std::vector<char>(text.begin(), text.end()));
  const auto foreign = expect_refusal(path("text.h5"), CheckpointProblem::damaged);
  EXPECT_NE(std::string(foreign.what()).find("shorter than the 512-byte header"), std::string::npos) << foreign.what();
  write_bytes(path("long.h5"), std::vector<char>(4096, 'x'));
  const auto garbage = expect_refusal(path("long.h5"), CheckpointProblem::damaged);
  EXPECT_NE(std::string(garbage.what()).find("no 'temoe-checkpoint' header"), std::string::npos) << garbage.what();
  // An HDF5 file that is not a temoe checkpoint.
  const hid_t other = H5Fcreate(path("other.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  H5Fclose(other);
  const auto hdf5 = expect_refusal(path("other.h5"), CheckpointProblem::incompatible);
  EXPECT_NE(std::string(hdf5.what()).find("not a temoe checkpoint"), std::string::npos) << hdf5.what();
}

TEST_F(CheckpointFile, RefusesInvalidContentOnWrite) {
  Checkpoint bad = original_;
  bad.ranks[1].random_state.pop_back();
  EXPECT_THROW(write_checkpoint_file(path("bad.h5"), bad), Error);
  bad = original_;
  bad.parameter_sets[1].name = "a/b";
  EXPECT_THROW(write_checkpoint_file(path("bad.h5"), bad), Error);
  bad = original_;
  bad.ranks.clear();
  EXPECT_THROW(write_checkpoint_file(path("bad.h5"), bad), Error);
}

// A checkpoint never holds a NaN or an infinity: one is refused on write, naming the parameter and
// the element, and a file that holds one anyway (edited, resealed) is refused on read as damaged, so
// the directory falls back to an older checkpoint instead of resuming a poisoned state.
TEST_F(CheckpointFile, NonFiniteValuesAreRefusedOnWriteAndOnRead) {
  for (const float poison : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    for (const bool moment : {false, true}) {
      Checkpoint bad = original_;
      ParameterSetState& set = bad.parameter_sets[0];
      ASSERT_TRUE(!moment || set.has_optimizer);
      Tensor& tensor = moment ? set.second_moments[0] : set.values[0];
      tensor = tensor.clone();
      tensor.data()[tensor.numel() - 1] = poison;
      try {
        write_checkpoint_file(path("bad.h5"), bad);
        ADD_FAILURE() << "a non-finite " << (moment ? "moment" : "value") << " was written";
      } catch (const Error& error) {
        const std::string message = error.what();
        EXPECT_NE(message.find("non-finite " + std::string(moment ? "exp_avg_sq" : "value") + " of parameter '" +
                               set.parameter_names[0] + "'"),
                  std::string::npos)
            << message;
        EXPECT_NE(message.find("element " + std::to_string(tensor.numel() - 1)), std::string::npos) << message;
      }
      EXPECT_FALSE(fs::exists(path("bad.h5")));
    }
  }
  const ParameterSetState& set = original_.parameter_sets[0];
  const std::string dataset = "/parameter_sets/" + set.name + "/" + set.parameter_names[0] + "/value";
  const hid_t file = H5Fopen(file_.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  const hid_t handle = H5Dopen2(file, dataset.c_str(), H5P_DEFAULT);
  ASSERT_GE(handle, 0);
  std::vector<float> poisoned(set.values[0].data(), set.values[0].data() + set.values[0].numel());
  poisoned[0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_GE(H5Dwrite(handle, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, poisoned.data()), 0);
  H5Dclose(handle);
  H5Fclose(file);
  reseal_checkpoint_file(file_);
  const auto error = expect_refusal(file_, CheckpointProblem::damaged);
  EXPECT_NE(std::string(error.what()).find("dataset " + dataset + " holds a non-finite value (element 0"), std::string::npos)
      << error.what();
}

// The format is meant to be read by other tools: h5py (Debian's python3) sees the datasets with
// their shapes and the attributes.
TEST_F(CheckpointFile, ReadableByH5py) {
  if (!fs::exists("/usr/bin/python3") || std::system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") != 0) {
    GTEST_SKIP() << "Debian's /usr/bin/python3 with h5py is not installed";
  }
  const std::string script = fs::path(TEMOE_SOURCE_DIR) / "tests" / "reference" / "read_checkpoint.py";
  const std::string command = "/usr/bin/python3 " + script + " " + file_.string() + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[4096];
  while (const size_t count = std::fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, count);
  const int status = ::pclose(pipe);
  EXPECT_EQ(status, 0) << output;
  EXPECT_NE(output.find("format_version 1"), std::string::npos) << output;
  EXPECT_NE(output.find("parameter_sets/controller/layer1.selection.w/value float32 (2, 3, 2)"), std::string::npos)
      << output;
  EXPECT_NE(output.find("ranks/random_state uint64 (3, 3)"), std::string::npos) << output;
  EXPECT_NE(output.find("step 42"), std::string::npos) << output;
}

}  // namespace
}  // namespace temoe
