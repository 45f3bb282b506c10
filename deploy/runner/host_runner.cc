// Host runner: runs a .tflite in TFLM's MicroInterpreter on int8 inputs and
// prints one JSON object on stdout:
//   {"arena_used_bytes": N, "input_bytes": I, "output_bytes": O,
//    "outputs": [[int8 ...], ...]}        (one list per input)
//
// usage: host_runner MODEL.tflite INPUTS.bin [ARENA_BYTES]
// INPUTS.bin holds the raw int8 input tensors back to back (a multiple of I).
// TFLM's log goes to stderr; a failure exits non-zero with a message there.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <vector>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "deploy/runner/op_resolver.h"

namespace {

constexpr size_t kDefaultArenaBytes = 64u << 20;
constexpr size_t kAlign = 16;

int Fail(const char* what, const char* detail) {
  std::fprintf(stderr, "host_runner: %s%s\n", what, detail);
  return 1;
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
  if (argc < 3 || argc > 4) return Fail("usage: host_runner MODEL.tflite INPUTS.bin [ARENA_BYTES]", "");
  std::vector<uint8_t> model_bytes, inputs;
  if (!ReadFile(argv[1], model_bytes)) return Fail("cannot read ", argv[1]);
  if (!ReadFile(argv[2], inputs)) return Fail("cannot read ", argv[2]);
  const size_t arena_bytes = argc == 4 ? std::strtoull(argv[3], nullptr, 10) : kDefaultArenaBytes;

  std::vector<uint8_t> model_storage, arena_storage;
  const tflite::Model* model = tflite::GetModel(AlignedCopy(model_bytes, model_storage));
  if (model->version() != TFLITE_SCHEMA_VERSION) return Fail("unsupported schema version in ", argv[1]);
  arena_storage.resize(arena_bytes + kAlign);
  uint8_t* arena = AlignedCopy(std::vector<uint8_t>(), arena_storage);

  mcuformer_runner::Resolver resolver;
  if (mcuformer_runner::AddAllOps(resolver) != kTfLiteOk) return Fail("op registration failed", "");
  tflite::MicroInterpreter interpreter(model, resolver, arena, arena_bytes);
  if (interpreter.AllocateTensors() != kTfLiteOk) return Fail("AllocateTensors failed (see the log above)", "");

  TfLiteTensor* input = interpreter.input(0);
  TfLiteTensor* output = interpreter.output(0);
  if (input->type != kTfLiteInt8 || output->type != kTfLiteInt8) return Fail("input and output must be int8", "");
  const size_t in_bytes = input->bytes, out_bytes = output->bytes;
  if (inputs.empty() || inputs.size() % in_bytes != 0) return Fail("inputs are not a multiple of the input tensor size", "");

  std::printf("{\"arena_used_bytes\": %zu, \"input_bytes\": %zu, \"output_bytes\": %zu, \"outputs\": [",
              interpreter.arena_used_bytes(), in_bytes, out_bytes);
  for (size_t n = 0; n < inputs.size() / in_bytes; ++n) {
    std::copy_n(inputs.begin() + n * in_bytes, in_bytes, input->data.int8);
    if (interpreter.Invoke() != kTfLiteOk) return Fail("Invoke failed (see the log above)", "");
    std::printf(n ? ", [" : "[");
    for (size_t i = 0; i < out_bytes; ++i) std::printf(i ? ", %d" : "%d", output->data.int8[i]);
    std::printf("]");
  }
  std::printf("]}\n");
  return 0;
}
