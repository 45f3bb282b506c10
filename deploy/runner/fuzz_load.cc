// Bounded mutation fuzzer of the host load path (no libFuzzer needed):
// mutants of valid seed models go through what the host runner does, in
// process: CRC-32 check, structural checks (model_checks.h), MicroInterpreter,
// AllocateTensors, Invoke on a random input. Built with ASan/UBSan, any
// memory error, undefined behaviour, abort or fatal signal ends the run with
// the sanitizer's report and the mutant written to --crash-out.
//
// usage: fuzz_load [--no-crc] [--no-checks] [--max-execs N] [--seconds S]
//                  [--seed K] [--arena BYTES] [--crash-out FILE] SEED.tflite...
// --no-crc skips the CRC check, so that mutants reach the checks, Prepare and
// Eval (with it, every mutant stops at the CRC). --no-checks also skips the
// structural checks: TFLM alone, which crashes (shows the harness sees it).
// A mutant equal to its seed is mutated again. Prints one JSON object:
//   {"executions": N, "seconds": S, "crc_rejected": .., "check_rejected": ..,
//    "allocate_failed": .., "invoke_failed": .., "ran": .., "mutations": {...}}
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <new>
#include <random>
#include <vector>

#include "deploy/runner/model_checks.h"
#include "deploy/runner/model_crc.h"
#include "deploy/runner/op_resolver.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
// An abort() (a TFLM or flatbuffers assertion) is a crash too: report it.
extern "C" const char* __asan_default_options() { return "handle_abort=1"; }
#endif

namespace {

constexpr unsigned kExecTimeoutSeconds = 20;
constexpr size_t kAlign = 16;

enum Mutation { kTruncate, kFlipByte, kFlipBytes, kCustomOptions, kBufferIndex, kIndexField, kWord, kMutations };
const char* const kMutationNames[kMutations] = {"truncate", "flip_byte", "flip_bytes", "custom_options",
                                                "buffer_index", "index_field", "word"};

// Where, in a valid seed, the mutations that aim at structure write.
struct Seed {
  std::vector<uint8_t> bytes;
  uint32_t crc = 0;
  uint32_t num_buffers = 0;
  std::vector<std::pair<size_t, size_t>> custom_options;  // (offset, length)
  std::vector<size_t> buffer_fields;                       // Tensor.buffer
  std::vector<size_t> index_fields;                        // int32 indices, dims, opcode indices, plan words
};

// The mutant being run, for the crash handlers.
const uint8_t* g_current = nullptr;
size_t g_current_size = 0;
const char* g_crash_out = nullptr;
FILE* g_report = nullptr;   // the real stderr; `stderr` points at /dev/null while fuzzing

void WriteCrashInput() {
  if (g_crash_out == nullptr || g_current == nullptr) return;
  const int fd = open(g_crash_out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  size_t done = 0;
  while (done < g_current_size) {
    const ssize_t n = write(fd, g_current + done, g_current_size - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
}

void OnTimeout(int) {
  WriteCrashInput();
  static const char kLine[] = "fuzz_load: an execution ran too long (a hang)\n";
  (void)!write(2, kLine, sizeof(kLine) - 1);
  _exit(3);
}

#if !defined(__SANITIZE_ADDRESS__)
void OnFatalSignal(int signal) {
  WriteCrashInput();
  ::signal(signal, SIG_DFL);
  raise(signal);
}
#endif

size_t OffsetIn(const Seed& seed, const void* p) {
  return static_cast<size_t>(static_cast<const uint8_t*>(p) - seed.bytes.data());
}

void AddVector(Seed& seed, const flatbuffers::Vector<int32_t>* v) {
  if (v == nullptr) return;
  for (size_t i = 0; i < v->size(); ++i) seed.index_fields.push_back(OffsetIn(seed, v->Data() + 4 * i));
}

void AddField(std::vector<size_t>& out, const Seed& seed, const void* table, uint16_t field) {
  const auto* t = reinterpret_cast<const flatbuffers::Table*>(table);
  const uint16_t offset = t->GetOptionalFieldOffset(field);
  if (offset != 0) out.push_back(OffsetIn(seed, reinterpret_cast<const uint8_t*>(table) + offset));
}

// Records the mutation targets of a seed that passed the checks.
void FindTargets(Seed& seed) {
  const tflite::Model* model = tflite::GetModel(seed.bytes.data());
  seed.num_buffers = model->buffers()->size();
  const tflite::SubGraph* graph = model->subgraphs()->Get(0);
  for (const tflite::Tensor* tensor : *graph->tensors()) {
    AddField(seed.buffer_fields, seed, tensor, tflite::Tensor::VT_BUFFER);
    AddVector(seed, tensor->shape());
    if (tensor->quantization() != nullptr) {
      AddField(seed.index_fields, seed, tensor->quantization(), tflite::QuantizationParameters::VT_QUANTIZED_DIMENSION);
    }
  }
  for (const tflite::Operator* op : *graph->operators()) {
    AddField(seed.index_fields, seed, op, tflite::Operator::VT_OPCODE_INDEX);
    AddVector(seed, op->inputs());
    AddVector(seed, op->outputs());
    if (op->custom_options() != nullptr && op->custom_options()->size() != 0) {
      seed.custom_options.emplace_back(OffsetIn(seed, op->custom_options()->data()), op->custom_options()->size());
    }
  }
  AddVector(seed, graph->inputs());
  AddVector(seed, graph->outputs());
  if (model->metadata() != nullptr) {
    for (const tflite::Metadata* meta : *model->metadata()) {
      AddField(seed.index_fields, seed, meta, tflite::Metadata::VT_BUFFER);
      const flatbuffers::Vector<uint8_t>* data = model->buffers()->Get(meta->buffer())->data();
      for (size_t i = 0; data != nullptr && i + 4 <= data->size(); i += 4) {
        seed.index_fields.push_back(OffsetIn(seed, data->data() + i));
      }
    }
  }
}

class Fuzzer {
 public:
  Fuzzer(std::vector<Seed>& seeds, uint64_t rng_seed, size_t arena_bytes, bool check_crc, bool check_model)
      : seeds_(seeds), rng_(rng_seed), arena_bytes_(arena_bytes), check_crc_(check_crc), check_model_(check_model) {
    arena_storage_.resize(arena_bytes + kAlign);
    arena_ = Aligned(arena_storage_);
  }

  // One mutant through the load path.
  void RunOne() {
    const Seed& seed = seeds_[Below(seeds_.size())];
    Mutation first;
    do {
      mutant_.assign(seed.bytes.begin(), seed.bytes.end());
      first = static_cast<Mutation>(Below(kMutations));
      Mutate(seed, first);
      if (first != kTruncate && Below(4) == 0) Mutate(seed, static_cast<Mutation>(1 + Below(kMutations - 1)));
    } while (mutant_ == seed.bytes);
    ++mutations_[first];

    storage_.resize(mutant_.size() + kAlign);
    uint8_t* data = Aligned(storage_);
    std::copy(mutant_.begin(), mutant_.end(), data);
    g_current = data;
    g_current_size = mutant_.size();
    ++executions_;
    alarm(kExecTimeoutSeconds);
    Load(data, mutant_.size(), seed.crc);
    alarm(0);
    g_current = nullptr;
  }

  void PrintSummary(double seconds) const {
    std::printf("{\"executions\": %llu, \"seconds\": %.3f, \"crc_checked\": %s, \"model_checked\": %s, "
                "\"crc_rejected\": %llu, "
                "\"check_rejected\": %llu, \"allocate_failed\": %llu, \"invoke_failed\": %llu, \"ran\": %llu, "
                "\"mutations\": {",
                executions_, seconds, check_crc_ ? "true" : "false", check_model_ ? "true" : "false", crc_rejected_, check_rejected_,
                allocate_failed_, invoke_failed_, ran_);
    for (int m = 0; m < kMutations; ++m) std::printf("%s\"%s\": %llu", m ? ", " : "", kMutationNames[m], mutations_[m]);
    std::printf("}}\n");
  }

 private:
  using Count = unsigned long long;

  static uint8_t* Aligned(std::vector<uint8_t>& storage) {
    const uintptr_t start = (reinterpret_cast<uintptr_t>(storage.data()) + kAlign - 1) & ~(kAlign - 1);
    return reinterpret_cast<uint8_t*>(start);
  }

  size_t Below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng_() % n); }

  int32_t InterestingWord() {
    static const int32_t kWords[] = {0, 1, -1, 2, -2, 3, 7, 8, 16, 127, 128, 255, 256, 1 << 16, INT32_MAX,
                                     INT32_MIN, INT32_MAX / 2, 0x10000000, 1 << 30};
    return Below(3) == 0 ? static_cast<int32_t>(rng_()) : kWords[Below(sizeof(kWords) / sizeof(kWords[0]))];
  }

  void PutWord(size_t offset, int32_t value) {
    if (offset + 4 <= mutant_.size()) std::memcpy(mutant_.data() + offset, &value, 4);
  }

  void Mutate(const Seed& seed, Mutation mutation) {
    if (mutant_.empty()) return;
    switch (mutation) {
      case kTruncate:
        mutant_.resize(Below(2) ? Below(mutant_.size()) : mutant_.size() - 1 - Below(std::min<size_t>(256, mutant_.size())));
        break;
      case kFlipByte:
        mutant_[Below(mutant_.size())] ^= static_cast<uint8_t>(1 + Below(255));
        break;
      case kFlipBytes:
        for (size_t n = 2 + Below(15); n > 0; --n) mutant_[Below(mutant_.size())] ^= static_cast<uint8_t>(1 + Below(255));
        break;
      case kCustomOptions: {
        if (seed.custom_options.empty()) return Mutate(seed, kFlipBytes);
        const auto& [offset, length] = seed.custom_options[Below(seed.custom_options.size())];
        const size_t start = Below(2) ? 0 : Below(length);
        const size_t end = Below(2) ? length : start + 1 + Below(length - start);
        for (size_t i = start; i < end; ++i) mutant_[offset + i] = static_cast<uint8_t>(rng_());
        break;
      }
      case kBufferIndex: {
        if (seed.buffer_fields.empty()) return Mutate(seed, kWord);
        const uint32_t over = Below(3) == 0 ? UINT32_MAX - static_cast<uint32_t>(Below(4))
                                            : seed.num_buffers + static_cast<uint32_t>(Below(16));
        PutWord(seed.buffer_fields[Below(seed.buffer_fields.size())], static_cast<int32_t>(over));
        break;
      }
      case kIndexField:
        if (seed.index_fields.empty()) return Mutate(seed, kWord);
        PutWord(seed.index_fields[Below(seed.index_fields.size())], InterestingWord());
        break;
      case kWord:
        PutWord(Below(mutant_.size() / 4) * 4, InterestingWord());
        break;
      default:
        break;
    }
  }

  void Load(const uint8_t* data, size_t size, uint32_t expected_crc) {
    if (check_crc_ && mcuformer::Crc32(data, size) != expected_crc) {
      ++crc_rejected_;
      return;
    }
    char why[256];
    if (check_model_ && !mcuformer_runner::CheckModel(data, size, why, sizeof(why))) {
      ++check_rejected_;
      return;
    }
    mcuformer_runner::Resolver resolver;
    if (mcuformer_runner::AddAllOps(resolver) != kTfLiteOk) std::abort();
    std::memset(arena_, 0, arena_bytes_);
    tflite::MicroInterpreter interpreter(tflite::GetModel(data), resolver, arena_, arena_bytes_);
    if (interpreter.AllocateTensors() != kTfLiteOk) {
      ++allocate_failed_;
      return;
    }
    for (size_t i = 0; i < interpreter.inputs_size(); ++i) {
      TfLiteTensor* input = interpreter.input(i);
      if (input == nullptr || input->data.raw == nullptr) continue;
      for (size_t b = 0; b < input->bytes; ++b) input->data.raw[b] = static_cast<char>(rng_());
    }
    if (interpreter.Invoke() != kTfLiteOk) {
      ++invoke_failed_;
      return;
    }
    ++ran_;
  }

  std::vector<Seed>& seeds_;
  std::mt19937_64 rng_;
  size_t arena_bytes_;
  bool check_crc_, check_model_;
  std::vector<uint8_t> arena_storage_, storage_, mutant_;
  uint8_t* arena_ = nullptr;
  Count executions_ = 0, crc_rejected_ = 0, check_rejected_ = 0, allocate_failed_ = 0, invoke_failed_ = 0, ran_ = 0;
  Count mutations_[kMutations] = {};
};

int Usage() {
  std::fprintf(stderr, "usage: fuzz_load [--no-crc] [--no-checks] [--max-execs N] [--seconds S] [--seed K] [--arena BYTES] "
                       "[--crash-out FILE] SEED.tflite...\n");
  return 2;
}

bool ReadSeed(const char* path, Seed& seed) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return false;
  seed.bytes.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  seed.crc = mcuformer::Crc32(seed.bytes.data(), seed.bytes.size());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  bool check_crc = true, check_model = true;
  unsigned long long max_execs = 0, rng_seed = 1;
  double seconds = 0;
  size_t arena_bytes = 256 * 1024;
  std::vector<Seed> seeds;
  for (int i = 1; i < argc; ++i) {
    const bool has_value = i + 1 < argc;
    if (!std::strcmp(argv[i], "--no-crc")) {
      check_crc = false;
    } else if (!std::strcmp(argv[i], "--no-checks")) {
      check_model = false;
    } else if (!std::strcmp(argv[i], "--max-execs") && has_value) {
      max_execs = std::strtoull(argv[++i], nullptr, 10);
    } else if (!std::strcmp(argv[i], "--seconds") && has_value) {
      seconds = std::strtod(argv[++i], nullptr);
    } else if (!std::strcmp(argv[i], "--seed") && has_value) {
      rng_seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (!std::strcmp(argv[i], "--arena") && has_value) {
      arena_bytes = std::strtoull(argv[++i], nullptr, 10);
    } else if (!std::strcmp(argv[i], "--crash-out") && has_value) {
      g_crash_out = argv[++i];
    } else if (argv[i][0] == '-') {
      return Usage();
    } else {
      seeds.emplace_back();
      if (!ReadSeed(argv[i], seeds.back())) {
        std::fprintf(stderr, "fuzz_load: cannot read %s\n", argv[i]);
        return 2;
      }
    }
  }
  if (seeds.empty() || (max_execs == 0 && seconds <= 0)) return Usage();
  for (size_t i = 0; i < seeds.size(); ++i) {
    char why[256];
    // the seeds stay at the address they were read to: vectors are never resized again
    if ((reinterpret_cast<uintptr_t>(seeds[i].bytes.data()) % kAlign) != 0 ||
        !mcuformer_runner::CheckModel(seeds[i].bytes.data(), seeds[i].bytes.size(), why, sizeof(why))) {
      std::fprintf(stderr, "fuzz_load: seed %zu is not a valid model: %s\n", i, why);
      return 2;
    }
    FindTargets(seeds[i]);
  }

#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_set_death_callback(WriteCrashInput);
#else
  for (int s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) signal(s, OnFatalSignal);
#endif
  signal(SIGALRM, OnTimeout);
  g_report = stderr;
  stderr = std::fopen("/dev/null", "w");   // TFLM's log (see log_capture.h); sanitizers write to fd 2

  Fuzzer fuzzer(seeds, rng_seed, arena_bytes, check_crc, check_model);
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  for (unsigned long long n = 0; (max_execs == 0 || n < max_execs) && (seconds <= 0 || elapsed < seconds); ++n) {
    fuzzer.RunOne();
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  std::fclose(stderr);
  stderr = g_report;
  fuzzer.PrintSummary(elapsed);
  return 0;
}
