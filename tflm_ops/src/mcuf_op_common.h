// Shared Init/Prepare/Eval plumbing of the MCUF_* ops: FlexBuffer options,
// tensor checks with logged messages, linear-layer tensors, scratch layout and
// the in-place (aliasing) rule.
#ifndef MCUFORMER_TFLM_OPS_MCUF_OP_COMMON_H_
#define MCUFORMER_TFLM_OPS_MCUF_OP_COMMON_H_

#include <stddef.h>
#include <stdint.h>

#include <initializer_list>

#include "mcuf_blocks.h"
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_common.h"

namespace mcuformer {

constexpr int32_t kOpVersion = 1;
constexpr int64_t kInt32Max = 2147483647;
constexpr int64_t kInt32Min = -kInt32Max - 1;

// Bound of every size (T, E, P*P*C, ranks, ...): int32 dot products and
// softmax sums cannot overflow below it.
constexpr int32_t kMaxSize = 65535;

// One integer option of an op's FlexBuffer map and its accepted range.
struct OptionSpec {
  const char* name;
  int64_t min;
  int64_t max;
};

constexpr int32_t kOptionsOk = -1;
constexpr int32_t kOptionsNotAMap = -2;

// Reads every option of `specs` into `values`. Returns kOptionsOk,
// kOptionsNotAMap (missing or corrupt FlexBuffer) or the index of the first
// option that is missing, not an integer or out of range.
int32_t ParseOptions(const char* buffer, size_t length, const OptionSpec* specs, int32_t count,
                     int64_t* values);

// Logs the parse status of ParseOptions for `op` and returns kTfLiteError,
// or kTfLiteOk for kOptionsOk.
TfLiteStatus ReportOptions(const char* op, int32_t status, const OptionSpec* specs);

// Allocates a zeroed persistent OpData of `bytes` in Init.
void* AllocateOpData(TfLiteContext* context, size_t bytes);

// An op's options as parsed in Init, in the order of its OptionSpec table:
// value[i] for int32 options; the one wider option (ln_eps) is in `wide`.
template <int kCount>
struct Options {
  int64_t wide;
  int32_t status;
  int32_t value[kCount];

  void Parse(const char* buffer, size_t length, const OptionSpec (&specs)[kCount]) {
    int64_t parsed[kCount] = {};
    status = ParseOptions(buffer, length, specs, kCount, parsed);
    for (int i = 0; i < kCount; ++i) {
      value[i] = static_cast<int32_t>(parsed[i]);
      if (specs[i].max > kInt32Max) wide = parsed[i];
    }
  }
};

// Init of every op: a persistent OpData (with an `options` member) holding
// the parsed FlexBuffer options; failures are reported by PreparedOpData.
template <typename OpData, int kCount>
void* InitOpData(TfLiteContext* context, const char* buffer, size_t length,
                 const OptionSpec (&specs)[kCount]) {
  OpData* data = static_cast<OpData*>(AllocateOpData(context, sizeof(OpData)));
  if (data != nullptr) data->options.Parse(buffer, length, specs);
  return data;
}

TfLiteStatus ReportMissingOpData(const char* op);

// The node's OpData at the start of Prepare, or nullptr (logged) when Init
// could not allocate it or its options are invalid.
template <typename OpData, int kCount>
OpData* PreparedOpData(TfLiteNode* node, const char* op, const OptionSpec (&specs)[kCount]) {
  OpData* data = static_cast<OpData*>(node->user_data);
  if (data == nullptr) {
    ReportMissingOpData(op);
    return nullptr;
  }
  return ReportOptions(op, data->options.status, specs) == kTfLiteOk ? data : nullptr;
}

template <void* (*Init)(TfLiteContext*, const char*, size_t),
          TfLiteStatus (*Prepare)(TfLiteContext*, TfLiteNode*),
          TfLiteStatus (*Eval)(TfLiteContext*, TfLiteNode*)>
const TFLMRegistration* StaticRegistration() {
  static const TFLMRegistration registration = tflite::micro::RegisterOp(Init, Prepare, Eval);
  return &registration;
}

// True for a valid (multiplier, shift) pair: m == 0 or 2^30 <= |m| < 2^31, shift in [-31, 30].
bool IsValidMultiplier(int64_t m, int64_t shift);

// Prepare-time checks: each logs "<op>: ..." and returns false on failure.
bool ExpectCounts(TfLiteNode* node, const char* op, int inputs);
bool ExpectTensor(TfLiteContext* context, TfLiteNode* node, const char* op, bool output,
                  int index, const char* what, TfLiteType type,
                  std::initializer_list<int32_t> dims);
// Reads the dims and zero point of activation `index` (int8, rank `ndims`).
bool ReadActivationShape(TfLiteContext* context, TfLiteNode* node, const char* op, bool output,
                         int index, int ndims, int32_t* dims, int32_t* zero_point);
// The same for a rank in [min_ndims, max_ndims], stored in *ndims (dims holds max_ndims).
bool ReadActivationShape(TfLiteContext* context, TfLiteNode* node, const char* op, bool output,
                         int index, int min_ndims, int max_ndims, int32_t* dims, int* ndims,
                         int32_t* zero_point);
// x and y both int8 [1, T, E] (attention and MLP): reads T, E and the zero points.
bool ReadTokensInOut(TfLiteContext* context, TfLiteNode* node, const char* op, int32_t* tokens,
                     int32_t* embed, int32_t* x_zp, int32_t* y_zp);
// The ln table int32 [E, 3] with valid (m, s) per row.
bool ExpectLayerNorm(TfLiteContext* context, TfLiteNode* node, const char* op, int index,
                     int32_t channels);
// The 3 (rank 0) or 6 tensors of a linear layer starting at input `first`.
bool ExpectLinear(TfLiteContext* context, TfLiteNode* node, const char* op, const char* name,
                  int first, int32_t rank, int32_t in, int32_t out);
inline int LinearTensorCount(int32_t rank) { return rank > 0 ? 6 : 3; }
inline int32_t Max(int32_t a, int32_t b) { return a > b ? a : b; }
inline int32_t Min(int32_t a, int32_t b) { return a < b ? a : b; }
// Bytes of a packed int16 buffer of nb tokens of n values (PackToken).
inline int64_t PackedBytes(int32_t n, int32_t nb = kTokenBatch) {
  return int64_t{2} * nb * PackedColumns(n);
}

// Eval-time views.
Linear GetLinear(const TfLiteContext* context, const TfLiteNode* node, int first, int32_t rank,
                 int32_t t_zp, int32_t in, int32_t out);
const int8_t* InputInt8(const TfLiteContext* context, const TfLiteNode* node, int index);
const int32_t* InputInt32(const TfLiteContext* context, const TfLiteNode* node, int index);
int8_t* OutputInt8(const TfLiteContext* context, const TfLiteNode* node);

// Output and input must be the same buffer (token overwriting) or disjoint.
TfLiteStatus CheckAliasing(const char* op, const void* in, size_t in_bytes, const void* out,
                           size_t out_bytes);

// An op's one scratch buffer: each segment's offset and the total bytes.
template <int kCount>
struct ScratchLayout {
  int64_t offset[kCount];
  int64_t bytes;
};

// Lays out segments of `size` bytes in order, each at an ALIGN4 offset (a
// segment of size 0 takes no space); the total is the end of the last one.
template <int kCount>
ScratchLayout<kCount> LayoutScratch(const int64_t (&size)[kCount]) {
  ScratchLayout<kCount> layout = {};
  int64_t end = 0;
  for (int i = 0; i < kCount; ++i) {
    layout.offset[i] = size[i] == 0 ? end : (end + 3) & ~int64_t{3};
    end = layout.offset[i] + size[i];
  }
  layout.bytes = end;
  return layout;
}

// Requests the op's single scratch buffer of `bytes` in Prepare (fails above int32).
TfLiteStatus RequestScratch(TfLiteContext* context, const char* op, int64_t bytes,
                            int32_t* index);

}  // namespace mcuformer

#endif  // MCUFORMER_TFLM_OPS_MCUF_OP_COMMON_H_
