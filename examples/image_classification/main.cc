// Image classification with an MCUFormer model in TFLM: the model array from
// the converter's model_data.cc (checked against its CRC-32 first: a damaged
// model is reported and never run), the custom kernels (mcuformer::RegisterOps),
// a static arena sized from the converter's report, and a few embedded test
// images. Prints, per image, the label, the int8 scores and (on a board) the
// DWT cycles of Invoke(), then arena_used_bytes(). Build: `mcuformer build`.
//
// `mcuformer build` generates the rest (deploy/app.py): test_images.cc and
// arena.cc, which defines the arena (required_arena_bytes rounded up to 16,
// 16-byte aligned). -DMCUF_WITH_BUILTINS also registers builtin ops, to run
// a builtin-op baseline.
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "model_data.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "test_images.h"
#include "deploy/make/platform/platform.h"
#include "deploy/runner/model_crc.h"
#include "deploy/runner/op_resolver.h"

extern uint8_t g_arena[];  // arena.cc
extern const size_t g_arena_bytes;

namespace {

void Print(const char* format, int a = 0, int b = 0, int c = 0) {
  char line[96];
  snprintf(line, sizeof(line), format, a, b, c);
  mcuf_platform_write(line);
}

int Fail(const char* what) {
  mcuf_platform_write("error: ");
  mcuf_platform_write(what);
  mcuf_platform_write("\n");
  return 1;
}

}  // namespace

int main() {
  mcuf_platform_init();
  mcuf_model_check_begin();
  const uint32_t crc = mcuformer::Crc32(mcuformer_model_data, mcuformer_model_data_len);
  mcuf_model_check_end();
  if (crc != mcuformer_model_data_crc32) {
    char line[96];
    snprintf(line, sizeof(line), "model CRC-32 0x%08lx, the converter's 0x%08lx: the model is damaged; not running it",
             static_cast<unsigned long>(crc), static_cast<unsigned long>(mcuformer_model_data_crc32));
    return Fail(line);
  }
  const tflite::Model* model = tflite::GetModel(mcuformer_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) return Fail("model schema version mismatch");

  static mcuformer_runner::Resolver resolver;
  if (mcuformer_runner::AddCustomOps(resolver) != kTfLiteOk) return Fail("op registration failed");
#ifdef MCUF_WITH_BUILTINS  // for builtin-op baselines only: the builtin kernels cost flash
  if (mcuformer_runner::AddBuiltinOps(resolver) != kTfLiteOk) return Fail("op registration failed");
#endif
  static tflite::MicroInterpreter interpreter(model, resolver, g_arena, g_arena_bytes);
  if (interpreter.AllocateTensors() != kTfLiteOk) return Fail("AllocateTensors failed (arena too small?)");

  TfLiteTensor* input = interpreter.input(0);
  TfLiteTensor* output = interpreter.output(0);
  if (input->type != kTfLiteInt8 || output->type != kTfLiteInt8 ||
      static_cast<int>(input->bytes) != kTestImageBytes) {
    return Fail("the model's input/output do not match the embedded int8 test images");
  }

  int correct = 0;
  for (int n = 0; n < kNumTestImages; ++n) {
    memcpy(input->data.int8, g_test_images + n * kTestImageBytes, kTestImageBytes);
    const uint32_t start = mcuf_platform_cycles();
    mcuf_invoke_begin();
    const TfLiteStatus status = interpreter.Invoke();
    mcuf_invoke_end();
    const uint32_t cycles = mcuf_platform_cycles() - start;
    if (status != kTfLiteOk) return Fail("Invoke failed");

    int label = 0;
    for (size_t k = 1; k < output->bytes; ++k) {
      if (output->data.int8[k] > output->data.int8[label]) label = static_cast<int>(k);
    }
    correct += label == g_test_labels[n];
    Print("image %d label %d expected %d scores", n, label, g_test_labels[n]);
    for (size_t k = 0; k < output->bytes; ++k) Print(" %d", output->data.int8[k]);
    if (mcuf_platform_has_cycles()) Print(" cycles %u", static_cast<int>(cycles));
    mcuf_platform_write("\n");
  }
  Print("correct %d of %d\n", correct, kNumTestImages);
  Print("arena_used_bytes %d arena_bytes %d\n", static_cast<int>(interpreter.arena_used_bytes()),
        static_cast<int>(g_arena_bytes));
  return 0;
}
