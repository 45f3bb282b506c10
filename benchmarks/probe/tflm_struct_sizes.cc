// sizeof/alignof of the TFLM structs the memory model needs (search/tflm_structs.py).
// Regenerate: benchmarks/probe/probe_struct_sizes.sh TFLM_ROOT  (host g++ and arm-none-eabi-g++).
#include "tensorflow/lite/core/c/builtin_op_data.h"
#include "tensorflow/lite/kernels/internal/types.h"
#include "tensorflow/lite/micro/arena_allocator/recording_single_arena_buffer_allocator.h"
#include "tensorflow/lite/micro/arena_allocator/single_arena_buffer_allocator.h"
#include "tensorflow/lite/micro/kernels/add.h"
#include "tensorflow/lite/micro/kernels/batch_matmul.h"
#include "tensorflow/lite/micro/kernels/conv.h"
#include "tensorflow/lite/micro/kernels/fully_connected.h"
#include "tensorflow/lite/micro/kernels/logistic.h"
#include "tensorflow/lite/micro/kernels/mul.h"
#include "tensorflow/lite/micro/kernels/reduce.h"
#include "tensorflow/lite/micro/kernels/sub.h"
#include "tensorflow/lite/micro/memory_planner/greedy_memory_planner.h"
#include "tensorflow/lite/micro/micro_allocation_info.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/recording_micro_allocator.h"

namespace tflite {
// OpData structs defined inside kernel .cc files (copied verbatim, 90b983c).
struct SquaredDifferenceOpData { bool requires_broadcast; ArithmeticParams arithmetic_params; };
struct OpDataAbsRsqrt {
  int32_t multiplier; int shift; int input_offset; int output_offset; bool needs_rescale;
  TfLiteQuantizationType input_quantization_type; TfLiteType input_type;
};
struct ConcatenationOpData { ConcatenationParams params; };
using ScratchBufferRequest = internal::ScratchBufferRequest;
}  // namespace tflite
using namespace tflite;

#define STRUCTS(X) \
  X(OpDataFullyConnected) X(OpDataConv) X(OpDataMul) X(OpDataAdd) X(OpDataSub) X(OpDataReduce) \
  X(OpDataLogistic) X(OpDataBatchMatmul) X(QuantizationOpDataBatchMatmul) X(SoftmaxParams) \
  X(StridedSliceParams) X(SquaredDifferenceOpData) X(OpDataAbsRsqrt) X(ConcatenationOpData) \
  X(TfLiteConvParams) X(TfLiteFullyConnectedParams) X(TfLiteAddParams) X(TfLiteSubParams) \
  X(TfLiteMulParams) X(TfLiteReducerParams) X(TfLiteSoftmaxParams) X(TfLiteStridedSliceParams) \
  X(TfLiteReshapeParams) X(TfLiteShapeParams) X(TfLitePackParams) X(TfLiteConcatenationParams) \
  X(TfLiteBatchMatMulParams) X(TfLiteEvalTensor) X(TfLiteTensor) X(NodeAndRegistration) \
  X(ScratchBufferHandle) X(TfLiteAffineQuantization) X(SubgraphAllocations) \
  X(SingleArenaBufferAllocator) X(MicroAllocator) X(GreedyMemoryPlanner) \
  X(RecordingSingleArenaBufferAllocator) X(RecordingMicroAllocator) \
  X(AllocationInfo) X(ScratchBufferRequest) X(size_t)

// Read from the object's .rodata (magic, then size/align pairs), so no target run is needed.
#define PAIR(T) sizeof(T), alignof(T),
extern "C" const unsigned kStructSizes[] = {0x5123E001u, STRUCTS(PAIR) 0x5123E002u};

#ifdef HOST_MAIN
#include <cstdio>
int main() {
#define NAME(T) #T,
  const char* names[] = {STRUCTS(NAME)};
  for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); ++i)
    std::printf("%s %u %u\n", names[i], kStructSizes[1 + 2 * i], kStructSizes[2 + 2 * i]);
}
#endif
