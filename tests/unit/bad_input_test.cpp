// The real `temoe forward` program on bad inputs: every broken model, config, token file or option
// must end the program with exit code 1 (not a signal), a message that names the offending file,
// tensor, key or flag and says what is wrong, and no output file (not even a partial one).
//
// Each case starts from a copy of a valid fixture model and breaks one thing, through the library's
// safetensors writer (tensor set and shapes) or by editing bytes (headers, truncation).
//
// Why the runs start together: every `temoe forward` starts an MPI singleton, which costs about half
// a second of mostly waiting. SetUpTestSuite prepares the cases of the tests that will run (so a
// --gtest_filter, or ctest running one test per process, starts only those) and launches them all at
// once; each TEST then inspects its own finished run.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "src/io/npy_file.hpp"
#include "src/model/model_config.hpp"
#include "src/model/parameter_names.hpp"
#include "src/model/safetensors_checkpoint.hpp"
#include "src/model/safetensors_writer.hpp"

extern char** environ;

namespace temoe {
namespace {

namespace fs = std::filesystem;

const fs::path kFixtures = TEMOE_FIXTURE_DIR;
const fs::path kBinary = TEMOE_BINARY;
// A run that takes longer than this is treated as a hang and killed.
constexpr auto kRunDeadline = std::chrono::seconds(60);

// ---------------------------------------------------------------------------------------------
// The files of one case, laid out under its own directory:
//   model/        a copy of a fixture model, then broken
//   tokens.npy    the fixture's tokens (or bad ones)
//   out/          empty; the program is told to write out/logits.npy
struct CaseFiles {
  fs::path root;
  fs::path model;
  fs::path tokens;
  fs::path out_dir;
  fs::path out;
  std::vector<std::string> extra_arguments;
  std::string subject;  // the tensor, key or file the error message must name (set by prepare)
};

struct RunResult {
  bool started = false;
  std::string setup_error;  // non-empty when preparing the case failed
  bool exited = false;      // ended by exit(), not by a signal
  int exit_code = -1;
  int signal = 0;
  bool timed_out = false;
  std::string output;  // stdout and stderr together
  CaseFiles files;
};

// ---------------------------------------------------------------------------------------------
// File helpers.

std::string read_text(const fs::path& path) {
  std::ifstream stream(path, std::ios::binary);
  std::ostringstream text;
  text << stream.rdbuf();
  return text.str();
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream stream(path, std::ios::binary | std::ios::trunc);
  stream << text;
  if (!stream) throw std::runtime_error("cannot write " + path.string());
}

void copy_fixture(const std::string& fixture, const fs::path& destination) {
  fs::create_directories(destination);
  fs::copy(kFixtures / fixture, destination, fs::copy_options::recursive);
}

std::vector<NamedTensor> read_all_tensors(const fs::path& model) {
  const SafetensorsCheckpoint checkpoint(model);
  std::vector<NamedTensor> tensors;
  for (const auto& name : checkpoint.tensor_names()) {
    tensors.push_back({name, checkpoint.load(name, checkpoint.entry(name).shape)});
  }
  return tensors;
}

// Rewrites model/model.safetensors (an F32 fixture, so the round trip is exact) after `edit`.
void edit_tensor_set(const fs::path& model, const std::function<void(std::vector<NamedTensor>&)>& edit) {
  std::vector<NamedTensor> tensors = read_all_tensors(model);
  edit(tensors);
  write_safetensors_file(model / "model.safetensors", tensors, DType::f32);
}

// The byte layout of a safetensors file: 8-byte little-endian header length, JSON header, data.
struct RawSafetensors {
  std::string bytes;
  uint64_t header_length() const {
    uint64_t length = 0;
    for (int i = 7; i >= 0; --i) length = (length << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
    return length;
  }
  std::string header() const { return bytes.substr(8, header_length()); }
  void set_header_length(uint64_t length) {
    for (int i = 0; i < 8; ++i) bytes[static_cast<size_t>(i)] = static_cast<char>((length >> (8 * i)) & 0xFF);
  }
  // Replaces the header by `text` padded with spaces to the old length, so the data offsets hold.
  void replace_header_keeping_length(std::string text) {
    const uint64_t length = header_length();
    if (text.size() > length) throw std::runtime_error("edited header is longer than the original");
    text.append(length - text.size(), ' ');
    bytes.replace(8, length, text);
  }
};

RawSafetensors read_raw(const fs::path& path) { return {read_text(path)}; }
void write_raw(const fs::path& path, const RawSafetensors& raw) { write_text(path, raw.bytes); }

ModelConfig fixture_config(const CaseFiles& files) { return ModelConfig::from_file(files.model / "config.json"); }

void edit_config_json(const CaseFiles& files, const std::function<void(nlohmann::json&)>& edit) {
  const fs::path path = files.model / "config.json";
  nlohmann::json json = nlohmann::json::parse(read_text(path));
  edit(json);
  write_text(path, json.dump(2) + "\n");
}

// Valid fixture tokens with one id replaced by `bad_id`.
void write_tokens_with(const CaseFiles& files, int32_t bad_id) {
  TokenArray tokens = read_token_npy(files.tokens);
  tokens.ids[tokens.ids.size() / 2] = bad_id;
  write_token_npy(files.root / "bad_tokens.npy", tokens);
}

// ---------------------------------------------------------------------------------------------
// The cases: each breaks one thing in a copy of mixtral_f32 (the last one in a sharded copy).

struct BadCase {
  const char* test_name;
  const char* fixture;
  std::function<void(CaseFiles&)> prepare;
};

const std::vector<BadCase>& all_cases() {
  static const std::vector<BadCase> cases = {
      {"ValidInputWritesLogits", "mixtral_f32", [](CaseFiles&) {}},
      {"MissingTensor", "mixtral_f32",
       [](CaseFiles& files) {
         files.subject = expert_tensor_name(fixture_config(files), 1, 3, ExpertTensor::down_proj);
         edit_tensor_set(files.model, [&](std::vector<NamedTensor>& tensors) {
           std::erase_if(tensors, [&](const NamedTensor& named) { return named.name == files.subject; });
         });
       }},
      {"ExtraTensor", "mixtral_f32",
       [](CaseFiles& files) {
         // A fifth expert in a model whose config has four.
         const ModelConfig config = fixture_config(files);
         files.subject = expert_tensor_name(config, 0, config.num_experts, ExpertTensor::gate_proj);
         edit_tensor_set(files.model, [&](std::vector<NamedTensor>& tensors) {
           tensors.push_back({files.subject, Tensor::zeros(expert_tensor_shape(config, ExpertTensor::gate_proj))});
         });
       }},
      {"WrongShape", "mixtral_f32",
       [](CaseFiles& files) {
         files.subject = layer_tensor_name(fixture_config(files), 0, LayerTensor::q_proj);
         edit_tensor_set(files.model, [&](std::vector<NamedTensor>& tensors) {
           for (auto& named : tensors) {
             if (named.name == files.subject) named.tensor = named.tensor.reshaped({named.tensor.dim(1), named.tensor.dim(0)});
           }
         });
       }},
      {"UnknownDtype", "mixtral_f32",
       [](CaseFiles& files) {
         files.subject = final_norm_name();
         const fs::path path = files.model / "model.safetensors";
         RawSafetensors raw = read_raw(path);
         auto header = nlohmann::ordered_json::parse(raw.header());
         header.at(files.subject)["dtype"] = "I64";
         raw.replace_header_keeping_length(header.dump());
         write_raw(path, raw);
       }},
      {"TruncatedFile", "mixtral_f32",
       [](CaseFiles& files) {
         // Cut 4 bytes: only the tensor whose data come last loses bytes.
         const fs::path path = files.model / "model.safetensors";
         RawSafetensors raw = read_raw(path);
         const nlohmann::json header = nlohmann::json::parse(raw.header());
         uint64_t last_end = 0;
         for (const auto& [name, entry] : header.items()) {
           if (name == "__metadata__") continue;
           const auto end = entry["data_offsets"][1].get<uint64_t>();
           if (end > last_end) last_end = end, files.subject = name;
         }
         raw.bytes.resize(raw.bytes.size() - 4);
         write_raw(path, raw);
       }},
      {"HeaderLengthPastEndOfFile", "mixtral_f32",
       [](CaseFiles& files) {
         const fs::path path = files.model / "model.safetensors";
         RawSafetensors raw = read_raw(path);
         raw.set_header_length(raw.bytes.size());
         write_raw(path, raw);
       }},
      {"MalformedJsonHeader", "mixtral_f32",
       [](CaseFiles& files) {
         // Drop the closing brace (same length, so only the JSON itself is wrong).
         const fs::path path = files.model / "model.safetensors";
         RawSafetensors raw = read_raw(path);
         std::string header = raw.header();
         header[header.rfind('}')] = ' ';
         raw.replace_header_keeping_length(header);
         write_raw(path, raw);
       }},
      {"ConfigKeyMissing", "mixtral_f32",
       [](CaseFiles& files) { edit_config_json(files, [](nlohmann::json& json) { json.erase("hidden_size"); }); }},
      {"ConfigKeyOfWrongType", "mixtral_f32",
       [](CaseFiles& files) {
         edit_config_json(files, [](nlohmann::json& json) { json["num_hidden_layers"] = "two"; });
       }},
      {"UnknownArchitecture", "mixtral_f32",
       [](CaseFiles& files) {
         edit_config_json(files, [](nlohmann::json& json) {
           json["model_type"] = "llama";
           json["architectures"] = {"LlamaForCausalLM"};
         });
       }},
      {"TokenIdEqualToVocabularySize", "mixtral_f32",
       [](CaseFiles& files) {
         write_tokens_with(files, static_cast<int32_t>(fixture_config(files).vocab_size));
         files.tokens = files.root / "bad_tokens.npy";
       }},
      {"NegativeTokenId", "mixtral_f32",
       [](CaseFiles& files) {
         write_tokens_with(files, -1);
         files.tokens = files.root / "bad_tokens.npy";
       }},
      {"UnknownKeyInConfigFile", "mixtral_f32",
       [](CaseFiles& files) {
         const fs::path config = files.root / "run.cfg";
         write_text(config, "[model]\nfoo = 1\n");
         files.extra_arguments = {"--config", config.string()};
       }},
      {"UnknownKeyOnCommandLine", "mixtral_f32",
       [](CaseFiles& files) { files.extra_arguments = {"--model.foo=1"}; }},
      {"ConfigSizeAboveItsBound", "mixtral_f32",
       [](CaseFiles& files) { edit_config_json(files, [](nlohmann::json& json) { json["hidden_size"] = (1 << 24) + 1; }); }},
      {"TensorShapeWhoseByteCountWraps", "mixtral_f32",
       [](CaseFiles& files) {
         // 2^62 floats: 2^64 bytes wrap to 0 in unchecked arithmetic and would match empty offsets.
         files.subject = final_norm_name();
         const fs::path path = files.model / "model.safetensors";
         RawSafetensors raw = read_raw(path);
         auto header = nlohmann::ordered_json::parse(raw.header());
         header.erase("__metadata__");  // room for the longer shape
         auto& entry = header.at(files.subject);
         entry["shape"] = {uint64_t{1} << 62};
         entry["data_offsets"][1] = entry["data_offsets"][0];
         raw.replace_header_keeping_length(header.dump());
         write_raw(path, raw);
       }},
      {"TokenShapeWhoseCountWraps", "mixtral_f32",
       [](CaseFiles& files) {
         std::string header = "{'descr': '<i4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }";
         header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
         header.push_back('\n');
         files.tokens = files.root / "bad_tokens.npy";
         write_text(files.tokens, std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(header.size()) + '\0' + header);
       }},
      {"ShardNamedByIndexIsMissing", "mixtral_bf16_sharded",
       [](CaseFiles& files) {
         files.subject = "model-00002-of-00003.safetensors";
         fs::remove(files.model / files.subject);
       }},
  };
  return cases;
}

// ---------------------------------------------------------------------------------------------
// Running the program.

class RunningProgram {
 public:
  // Starts `arguments` (arguments[0] is the program) with stdout and stderr going to `log`.
  RunningProgram(const std::vector<std::string>& arguments, const fs::path& log) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    std::vector<char*> argv;
    for (const auto& argument : arguments) argv.push_back(const_cast<char*>(argument.c_str()));
    argv.push_back(nullptr);
    const int status = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (status != 0) throw std::runtime_error("posix_spawn " + arguments[0] + " failed: " + std::strerror(status));
  }

  // Waits until the program ends or `deadline` passes (then kills it and reports a time-out).
  void wait(std::chrono::steady_clock::time_point deadline, RunResult& result) {
    int status = 0;
    for (;;) {
      const pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_) break;
      if (done < 0) throw std::runtime_error(std::string("waitpid failed: ") + std::strerror(errno));
      if (std::chrono::steady_clock::now() > deadline) {
        result.timed_out = true;
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    result.exited = WIFEXITED(status);
    result.exit_code = result.exited ? WEXITSTATUS(status) : -1;
    result.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  }

 private:
  pid_t pid_ = -1;
};

std::vector<std::string> forward_command(const CaseFiles& files) {
  std::vector<std::string> arguments = {kBinary.string(), "forward", "--model", files.model.string(),
                                        "--tokens", files.tokens.string(), "--out", files.out.string()};
  arguments.insert(arguments.end(), files.extra_arguments.begin(), files.extra_arguments.end());
  return arguments;
}

// ---------------------------------------------------------------------------------------------

class BadInput : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("temoe_bad_input_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    const ::testing::TestSuite* suite = ::testing::UnitTest::GetInstance()->current_test_suite();
    std::vector<std::pair<RunResult*, std::unique_ptr<RunningProgram>>> running;
    for (int i = 0; i < suite->total_test_count(); ++i) {
      const ::testing::TestInfo* test = suite->GetTestInfo(i);
      if (!test->should_run()) continue;
      for (const BadCase& bad : all_cases()) {
        if (test->name() != std::string(bad.test_name)) continue;
        RunResult& result = results_[bad.test_name];
        CaseFiles& files = result.files;
        files.root = root_ / bad.test_name;
        files.model = files.root / "model";
        files.tokens = files.model / "tokens.npy";
        files.out_dir = files.root / "out";
        files.out = files.out_dir / "logits.npy";
        try {
          copy_fixture(bad.fixture, files.model);
          fs::create_directories(files.out_dir);
          bad.prepare(files);
          running.emplace_back(&result, std::make_unique<RunningProgram>(forward_command(files), files.root / "output.txt"));
          result.started = true;
        } catch (const std::exception& error) {
          result.setup_error = error.what();
        }
      }
    }
    const auto deadline = std::chrono::steady_clock::now() + kRunDeadline;
    for (auto& [result, program] : running) {
      program->wait(deadline, *result);
      result->output = read_text(result->files.root / "output.txt");
    }
  }

  static void TearDownTestSuite() {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
    results_.clear();
  }

  // The finished run of the current test.
  static const RunResult& run() {
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    const RunResult& result = results_[name];
    EXPECT_EQ(result.setup_error, "") << "preparing the case failed";
    EXPECT_TRUE(result.started) << "no case named " << name << " in all_cases()";
    EXPECT_FALSE(result.timed_out) << "temoe forward ran past " << kRunDeadline.count() << " s (hang?)";
    return result;
  }

  // Exit code 1 from main's error handler (no crash, no abort), and nothing in the output folder.
  static void expect_clean_failure(const RunResult& result) {
    EXPECT_TRUE(result.exited) << "killed by signal " << result.signal << "; output:\n" << result.output;
    EXPECT_EQ(result.exit_code, 1) << result.output;
    EXPECT_FALSE(fs::exists(result.files.out)) << "partial output " << result.files.out;
    std::vector<std::string> left;
    for (const auto& entry : fs::directory_iterator(result.files.out_dir)) left.push_back(entry.path().filename());
    EXPECT_TRUE(left.empty()) << "the output folder holds " << left.size() << " file(s), e.g. "
                              << (left.empty() ? "" : left.front());
  }

  static void expect_mentions(const RunResult& result, const std::string& text) {
    EXPECT_NE(result.output.find(text), std::string::npos) << "the message does not mention '" << text
                                                           << "':\n" << result.output;
  }

  static inline fs::path root_;
  static inline std::map<std::string, RunResult> results_;
};

TEST_F(BadInput, ValidInputWritesLogits) {
  const RunResult& result = run();
  EXPECT_TRUE(result.exited);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  ASSERT_TRUE(fs::exists(result.files.out));
  const Tensor logits = read_float_npy(result.files.out);
  const Tensor expected = read_float_npy(result.files.model / "logits.npy");
  ASSERT_EQ(logits.shape(), expected.shape());
  double max_difference = 0, max_reference = 0;
  for (int64_t i = 0; i < logits.numel(); ++i) {
    max_difference = std::max(max_difference, std::fabs(double(logits.data()[i]) - expected.data()[i]));
    max_reference = std::max(max_reference, std::fabs(double(expected.data()[i])));
  }
  EXPECT_LE(max_difference / max_reference, 1e-4);
  // Only the output itself: the atomic writer's temporary file is gone.
  EXPECT_EQ(std::distance(fs::directory_iterator(result.files.out_dir), fs::directory_iterator()), 1);
}

TEST_F(BadInput, MissingTensor) {
  const RunResult& result = run();
  expect_clean_failure(result);
  expect_mentions(result, result.files.model.string());
  expect_mentions(result, "are missing");
  expect_mentions(result, "'" + result.files.subject + "'");
}

TEST_F(BadInput, ExtraTensor) {
  const RunResult& result = run();
  expect_clean_failure(result);
  expect_mentions(result, result.files.model.string());
  expect_mentions(result, "does not imply");
  expect_mentions(result, "'" + result.files.subject + "'");
}

TEST_F(BadInput, WrongShape) {
  const RunResult& result = run();
  expect_clean_failure(result);
  expect_mentions(result, (result.files.model / "model.safetensors").string());
  expect_mentions(result, "'" + result.files.subject + "' has shape [48, 64], but config.json implies [64, 48]");
}

TEST_F(BadInput, UnknownDtype) {
  const RunResult& result = run();
  expect_clean_failure(result);
  expect_mentions(result, (result.files.model / "model.safetensors").string());
  expect_mentions(result, "'" + result.files.subject + "'");
  expect_mentions(result, "dtype 'I64'");
}

TEST_F(BadInput, TruncatedFile) {
  const RunResult& result = run();
  expect_clean_failure(result);
  expect_mentions(result, (result.files.model / "model.safetensors").string());
  expect_mentions(result, "'" + result.files.subject + "'");
  expect_mentions(result, "truncated file");
}

TEST_F(BadInput, HeaderLengthPastEndOfFile) {
  const RunResult& result = run();
  expect_clean_failure(result);
  expect_mentions(result, (result.files.model / "model.safetensors").string());
  expect_mentions(result, "header length");
  expect_mentions(result, "runs past the end of the file");
}

TEST_F(BadInput, MalformedJsonHeader) {
  const RunResult& result = run();
  expect_clean_failure(result);
  expect_mentions(result, (result.files.model / "model.safetensors").string());
  expect_mentions(result, "malformed JSON header");
}

TEST_F(BadInput, ConfigKeyMissing) {
  const RunResult& result = run();
  expect_clean_failure(result);
  expect_mentions(result, (result.files.model / "config.json").string());
  expect_mentions(result, "missing key 'hidden_size'");
}

TEST_F(BadInput, ConfigKeyOfWrongType) {
  const RunResult& result = run();
  expect_clean_failure(result);
  expect_mentions(result, (result.files.model / "config.json").string());
  expect_mentions(result, "key 'num_hidden_layers' is \"two\", expected a positive integer");
}

TEST_F(BadInput, UnknownArchitecture) {
  const RunResult& result = run();
  expect_clean_failure(result);
  expect_mentions(result, (result.files.model / "config.json").string());
  expect_mentions(result, "unknown architecture 'llama'");
}

TEST_F(BadInput, TokenIdEqualToVocabularySize) {
  const RunResult& result = run();
  expect_clean_failure(result);
  expect_mentions(result, result.files.tokens.string());
  expect_mentions(result, "token id 96 ");
  expect_mentions(result, "outside the vocabulary [0, 96)");
}

TEST_F(BadInput, NegativeTokenId) {
  const RunResult& result = run();
  expect_clean_failure(result);
  expect_mentions(result, result.files.tokens.string());
  expect_mentions(result, "token id -1 ");
  expect_mentions(result, "outside the vocabulary [0, 96)");
}

TEST_F(BadInput, UnknownKeyInConfigFile) {
  const RunResult& result = run();
  expect_clean_failure(result);
  expect_mentions(result, (result.files.root / "run.cfg").string());
  expect_mentions(result, "model.foo");
}

TEST_F(BadInput, UnknownKeyOnCommandLine) {
  const RunResult& result = run();
  expect_clean_failure(result);
  expect_mentions(result, "--model.foo");
  expect_mentions(result, "unrecognised option");
}

TEST_F(BadInput, ConfigSizeAboveItsBound) {
  const RunResult& result = run();
  expect_clean_failure(result);
  expect_mentions(result, (result.files.model / "config.json").string());
  expect_mentions(result, "key 'hidden_size' is 16777217, expected an integer in [1, 16777216]");
}

TEST_F(BadInput, TensorShapeWhoseByteCountWraps) {
  const RunResult& result = run();
  expect_clean_failure(result);
  expect_mentions(result, (result.files.model / "model.safetensors").string());
  expect_mentions(result, "'" + result.files.subject + "': shape [4611686018427387904] of 4-byte elements");
}

TEST_F(BadInput, TokenShapeWhoseCountWraps) {
  const RunResult& result = run();
  expect_clean_failure(result);
  expect_mentions(result, result.files.tokens.string());
  expect_mentions(result, "shape [4294967296, 4294967296]");
}

TEST_F(BadInput, ShardNamedByIndexIsMissing) {
  const RunResult& result = run();
  expect_clean_failure(result);
  expect_mentions(result, (result.files.model / "model.safetensors.index.json").string());
  expect_mentions(result, (result.files.model / result.files.subject).string() + " does not exist");
}

}  // namespace
}  // namespace temoe
