// Host runner: runs a .tflite in TFLM's MicroInterpreter on int8 inputs and
// prints one JSON object on stdout:
//   {"arena_used_bytes": N, "input_bytes": I, "output_bytes": O,
//    "outputs": [[int8 ...], ...]}        (one list per input)
//
// usage: host_runner [--crc32 HEX] MODEL.tflite INPUTS.bin [ARENA_BYTES]
// INPUTS.bin holds the raw int8 input tensors back to back (a multiple of I).
// Before TFLM sees the model: its CRC-32 must equal --crc32 (the converter's,
// when given) and it must pass the structural checks (model_checks.h).
// A failure exits non-zero with one line on stderr (TFLM's log joined into
// it); on success TFLM's log goes to stderr as it is.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "deploy/runner/log_capture.h"
#include "deploy/runner/model_checks.h"
#include "deploy/runner/model_crc.h"
#include "deploy/runner/op_resolver.h"

namespace {

constexpr size_t kDefaultArenaBytes = 64u << 20;
constexpr size_t kAlign = 16;

int Fail(const char* what, const char* detail) {
  std::fprintf(stderr, "host_runner: %s%s\n", what, detail);
  return 1;
}

int Fail(const char* what, mcuformer_runner::LogCapture& log) {
  log.Stop();
  const std::string detail = log.OneLine();
  return Fail(what, detail.empty() ? "" : (": " + detail).c_str());
}

// The model must match the CRC-32 the converter recorded and pass the
// structural checks before TFLM reads it; false after printing the reason.
bool ModelIsIntact(const char* path, const uint8_t* model, size_t size, const char* crc_text) {
  if (crc_text != nullptr) {
    char* end = nullptr;
    const unsigned long long expected = std::strtoull(crc_text, &end, 16);
    if (end == crc_text || *end != '\0' || expected > 0xFFFFFFFFull) {
      Fail("--crc32 wants 8 hex digits, got ", crc_text);
      return false;
    }
    const uint32_t actual = mcuformer::Crc32(model, size);
    if (actual != expected) {
      std::fprintf(stderr, "host_runner: %s: CRC-32 0x%08x does not match the converter's 0x%08llx "
                   "(the model is damaged or was changed); not running it\n", path, actual, expected);
      return false;
    }
  }
  char why[256];
  if (!mcuformer_runner::CheckModel(model, size, why, sizeof(why))) {
    std::fprintf(stderr, "host_runner: %s is not a model TFLM can run safely: %s\n", path, why);
    return false;
  }
  return true;
}

bool ReadFile(const char* path, std::vector<uint8_t>& out) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return false;
  out.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  return true;
}

// A copy of `bytes` whose start is kAlign-aligned (flatbuffers and the arena want it).
uint8_t* AlignedCopy(const std::vector<uint8_t>& bytes, std::vector<uint8_t>& storage) {
  storage.resize(bytes.size() + kAlign);
  uintptr_t start = (reinterpret_cast<uintptr_t>(storage.data()) + kAlign - 1) & ~(kAlign - 1);
  uint8_t* aligned = reinterpret_cast<uint8_t*>(start);
  std::copy(bytes.begin(), bytes.end(), aligned);
  return aligned;
}

}  // namespace

int main(int argc, char** argv) {
  const char* crc_text = nullptr;
  if (argc >= 3 && std::strcmp(argv[1], "--crc32") == 0) {
    crc_text = argv[2];
    argc -= 2;
    argv += 2;
  }
  if (argc < 3 || argc > 4) return Fail("usage: host_runner [--crc32 HEX] MODEL.tflite INPUTS.bin [ARENA_BYTES]", "");
  std::vector<uint8_t> model_bytes, inputs;
  if (!ReadFile(argv[1], model_bytes)) return Fail("cannot read ", argv[1]);
  if (!ReadFile(argv[2], inputs)) return Fail("cannot read ", argv[2]);
  const size_t arena_bytes = argc == 4 ? std::strtoull(argv[3], nullptr, 10) : kDefaultArenaBytes;

  std::vector<uint8_t> model_storage, arena_storage;
  const uint8_t* model_data = AlignedCopy(model_bytes, model_storage);
  if (!ModelIsIntact(argv[1], model_data, model_bytes.size(), crc_text)) return 1;
  const tflite::Model* model = tflite::GetModel(model_data);
  arena_storage.resize(arena_bytes + kAlign);
  uint8_t* arena = AlignedCopy(std::vector<uint8_t>(), arena_storage);

  mcuformer_runner::Resolver resolver;
  if (mcuformer_runner::AddAllOps(resolver) != kTfLiteOk) return Fail("op registration failed", "");
  mcuformer_runner::LogCapture log;
  tflite::MicroInterpreter interpreter(model, resolver, arena, arena_bytes);
  if (interpreter.AllocateTensors() != kTfLiteOk) return Fail("AllocateTensors failed", log);

  TfLiteTensor* input = interpreter.input(0);
  TfLiteTensor* output = interpreter.output(0);
  if (input == nullptr || output == nullptr) return Fail("the model has no input or no output", log);
  if (input->type != kTfLiteInt8 || output->type != kTfLiteInt8) return Fail("input and output must be int8", log);
  const size_t in_bytes = input->bytes, out_bytes = output->bytes;
  if (in_bytes == 0 || inputs.empty() || inputs.size() % in_bytes != 0) {
    return Fail("inputs are not a multiple of the input tensor size", log);
  }

  std::printf("{\"arena_used_bytes\": %zu, \"input_bytes\": %zu, \"output_bytes\": %zu, \"outputs\": [",
              interpreter.arena_used_bytes(), in_bytes, out_bytes);
  for (size_t n = 0; n < inputs.size() / in_bytes; ++n) {
    std::copy_n(inputs.begin() + n * in_bytes, in_bytes, input->data.int8);
    if (interpreter.Invoke() != kTfLiteOk) return Fail("Invoke failed", log);
    std::printf(n ? ", [" : "[");
    for (size_t i = 0; i < out_bytes; ++i) std::printf(i ? ", %d" : "%d", output->data.int8[i]);
    std::printf("]");
  }
  std::printf("]}\n");
  log.Stop(/*replay=*/true);
  return 0;
}
