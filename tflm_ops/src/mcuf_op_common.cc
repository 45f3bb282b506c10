#include "mcuf_op_common.h"

#include <string.h>

#include "flatbuffers/flexbuffers.h"
#include "tensorflow/lite/kernels/kernel_util.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace mcuformer {

int32_t ParseOptions(const char* buffer, size_t length, const OptionSpec* specs, int32_t count,
                     int64_t* values) {
  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(buffer);
  if (bytes == nullptr || length == 0 || length >= (1u << 30)) return kOptionsNotAMap;
  flexbuffers::Verifier verifier(bytes, length);
  if (!verifier.VerifyBuffer()) return kOptionsNotAMap;
  const flexbuffers::Reference root = flexbuffers::GetRoot(bytes, length);
  if (!root.IsMap()) return kOptionsNotAMap;
  const flexbuffers::Map map = root.AsMap();
  for (int32_t i = 0; i < count; ++i) {
    const flexbuffers::Reference ref = map[specs[i].name];
    int64_t value;
    if (ref.IsInt()) {
      value = ref.AsInt64();
    } else if (ref.IsUInt()) {
      const uint64_t u = ref.AsUInt64();
      if (u > static_cast<uint64_t>(INT64_MAX)) return i;
      value = static_cast<int64_t>(u);
    } else {
      return i;
    }
    if (value < specs[i].min || value > specs[i].max) return i;
    values[i] = value;
  }
  return kOptionsOk;
}

TfLiteStatus ReportOptions(const char* op, int32_t status, const OptionSpec* specs) {
  if (status == kOptionsOk) return kTfLiteOk;
  if (status == kOptionsNotAMap) {
    MicroPrintf("%s: custom options are not a valid FlexBuffer map", op);
  } else {
    const OptionSpec& spec = specs[status];
    MicroPrintf("%s: option '%s' is missing, not an integer or outside [%ld, %ld]", op,
                spec.name, static_cast<long>(spec.min), static_cast<long>(spec.max));
  }
  return kTfLiteError;
}

void* AllocateOpData(TfLiteContext* context, size_t bytes) {
  void* data = context->AllocatePersistentBuffer(context, bytes);
  if (data != nullptr) memset(data, 0, bytes);
  return data;
}

TfLiteStatus ReportMissingOpData(const char* op) {
  MicroPrintf("%s: no persistent memory for OpData", op);
  return kTfLiteError;
}

bool IsValidMultiplier(int64_t m, int64_t shift) {
  const int64_t magnitude = m < 0 ? -m : m;
  const bool m_ok = m == 0 || (magnitude >= (int64_t{1} << 30) && magnitude < (int64_t{1} << 31));
  return m_ok && shift >= -31 && shift <= 30;
}

bool ExpectCounts(TfLiteNode* node, const char* op, int inputs) {
  if (tflite::NumInputs(node) != inputs || tflite::NumOutputs(node) != 1) {
    MicroPrintf("%s: expects %d inputs and 1 output, got %d and %d", op, inputs,
                tflite::NumInputs(node), tflite::NumOutputs(node));
    return false;
  }
  return true;
}

namespace {

// Temp TfLiteTensor of an input or the output, released on scope exit.
class TempTensor {
 public:
  TempTensor(TfLiteContext* context, TfLiteNode* node, bool output, int index)
      : micro_context_(tflite::GetMicroContext(context)),
        tensor_(output ? micro_context_->AllocateTempOutputTensor(node, index)
                       : micro_context_->AllocateTempInputTensor(node, index)) {}
  ~TempTensor() {
    if (tensor_ != nullptr) micro_context_->DeallocateTempTfLiteTensor(tensor_);
  }
  const TfLiteTensor* get() const { return tensor_; }

 private:
  tflite::MicroContext* micro_context_;
  TfLiteTensor* tensor_;
};

const char* Role(bool output) { return output ? "output" : "input"; }

bool MatchShape(const TfLiteTensor* tensor, TfLiteType type, const int32_t* dims, int ndims) {
  if (tensor->type != type || tensor->dims == nullptr || tensor->dims->size != ndims) return false;
  for (int i = 0; i < ndims; ++i) {
    if (tensor->dims->data[i] != dims[i]) return false;
  }
  return true;
}

void LogShapeMismatch(const char* op, bool output, int index, const char* what, TfLiteType type,
                      const int32_t* dims, int ndims, const TfLiteTensor* got) {
  char want[64];
  int pos = 0;
  for (int i = 0; i < ndims && pos < 48; ++i) {
    pos += MicroSnprintf(want + pos, sizeof(want) - pos, i ? ", %ld" : "%ld",
                         static_cast<long>(dims[i]));
  }
  want[pos] = '\0';
  MicroPrintf("%s: %s %d (%s) must be %s [%s], got %s of rank %d", op, Role(output), index, what,
              TfLiteTypeGetName(type), want, TfLiteTypeGetName(got->type),
              got->dims ? got->dims->size : -1);
}

bool ExpectMultiplierRows(const char* op, int index, const char* what, const int32_t* rows,
                          int32_t count, int32_t stride) {
  if (rows == nullptr) {
    MicroPrintf("%s: input %d (%s) must be a constant tensor", op, index, what);
    return false;
  }
  for (int32_t i = 0; i < count; ++i) {
    if (!IsValidMultiplier(rows[i * stride], rows[i * stride + 1])) {
      MicroPrintf("%s: input %d (%s) row %ld holds an invalid multiplier/shift", op, index, what,
                  static_cast<long>(i));
      return false;
    }
  }
  return true;
}

}  // namespace

bool ExpectTensor(TfLiteContext* context, TfLiteNode* node, const char* op, bool output,
                  int index, const char* what, TfLiteType type,
                  std::initializer_list<int32_t> dims) {
  TempTensor tensor(context, node, output, index);
  if (tensor.get() == nullptr) {
    MicroPrintf("%s: %s %d (%s) is missing", op, Role(output), index, what);
    return false;
  }
  const int ndims = static_cast<int>(dims.size());
  if (!MatchShape(tensor.get(), type, dims.begin(), ndims)) {
    LogShapeMismatch(op, output, index, what, type, dims.begin(), ndims, tensor.get());
    return false;
  }
  return true;
}

bool ReadActivationShape(TfLiteContext* context, TfLiteNode* node, const char* op, bool output,
                         int index, int ndims, int32_t* dims, int32_t* zero_point) {
  int rank = 0;
  return ReadActivationShape(context, node, op, output, index, ndims, ndims, dims, &rank, zero_point);
}

bool ReadActivationShape(TfLiteContext* context, TfLiteNode* node, const char* op, bool output,
                         int index, int min_ndims, int max_ndims, int32_t* dims, int* ndims,
                         int32_t* zero_point) {
  TempTensor tensor(context, node, output, index);
  const TfLiteTensor* t = tensor.get();
  if (t == nullptr || t->type != kTfLiteInt8 || t->dims == nullptr || t->dims->size < min_ndims ||
      t->dims->size > max_ndims) {
    if (min_ndims == max_ndims) {
      MicroPrintf("%s: %s %d must be an int8 tensor of rank %d", op, Role(output), index, min_ndims);
    } else {
      MicroPrintf("%s: %s %d must be an int8 tensor of rank %d to %d", op, Role(output), index,
                  min_ndims, max_ndims);
    }
    return false;
  }
  *ndims = t->dims->size;
  for (int i = 0; i < *ndims; ++i) {
    dims[i] = t->dims->data[i];
    if (dims[i] < 1) {
      MicroPrintf("%s: %s %d has an empty dimension", op, Role(output), index);
      return false;
    }
  }
  *zero_point = t->params.zero_point;
  if (*zero_point < -128 || *zero_point > 127) {
    MicroPrintf("%s: %s %d zero point %ld is outside int8", op, Role(output), index,
                static_cast<long>(*zero_point));
    return false;
  }
  return true;
}

bool ReadTokensInOut(TfLiteContext* context, TfLiteNode* node, const char* op, int32_t* tokens,
                     int32_t* embed, int32_t* x_zp, int32_t* y_zp) {
  int32_t x[3], y[3];
  if (!ReadActivationShape(context, node, op, false, 0, 3, x, x_zp) ||
      !ReadActivationShape(context, node, op, true, 0, 3, y, y_zp)) {
    return false;
  }
  if (x[0] != 1 || y[0] != 1 || y[1] != x[1] || y[2] != x[2] || x[1] > kMaxSize ||
      x[2] > kMaxSize || int64_t{x[1]} * x[2] > kInt32Max) {
    MicroPrintf("%s: x and y must both be [1, T, E] with T, E <= %ld", op,
                static_cast<long>(kMaxSize));
    return false;
  }
  *tokens = x[1];
  *embed = x[2];
  return true;
}

bool ExpectLayerNorm(TfLiteContext* context, TfLiteNode* node, const char* op, int index,
                     int32_t channels) {
  if (!ExpectTensor(context, node, op, false, index, "ln", kTfLiteInt32, {channels, 3})) {
    return false;
  }
  TempTensor tensor(context, node, false, index);
  return ExpectMultiplierRows(op, index, "ln", tensor.get()->data.i32, channels, 3);
}

namespace {

bool ExpectFactor(TfLiteContext* context, TfLiteNode* node, const char* op, int first,
                  int32_t in, int32_t out) {
  if (!ExpectTensor(context, node, op, false, first, "weights", kTfLiteInt8, {out, in}) ||
      !ExpectTensor(context, node, op, false, first + 1, "bias", kTfLiteInt32, {out}) ||
      !ExpectTensor(context, node, op, false, first + 2, "rq", kTfLiteInt32, {out, 2})) {
    return false;
  }
  TempTensor rq(context, node, false, first + 2);
  return ExpectMultiplierRows(op, first + 2, "rq", rq.get()->data.i32, out, 2);
}

}  // namespace

bool ExpectLinear(TfLiteContext* context, TfLiteNode* node, const char* op, const char* name,
                  int first, int32_t rank, int32_t in, int32_t out) {
  const bool ok = rank > 0 ? ExpectFactor(context, node, op, first, in, rank) &&
                                 ExpectFactor(context, node, op, first + 3, rank, out)
                           : ExpectFactor(context, node, op, first, in, out);
  if (!ok) MicroPrintf("%s: in linear layer %s (%ld -> %ld, rank %ld)", op, name,
                       static_cast<long>(in), static_cast<long>(out), static_cast<long>(rank));
  return ok;
}

const int8_t* InputInt8(const TfLiteContext* context, const TfLiteNode* node, int index) {
  return tflite::micro::GetTensorData<int8_t>(tflite::micro::GetEvalInput(context, node, index));
}

const int32_t* InputInt32(const TfLiteContext* context, const TfLiteNode* node, int index) {
  return tflite::micro::GetTensorData<int32_t>(tflite::micro::GetEvalInput(context, node, index));
}

int8_t* OutputInt8(const TfLiteContext* context, const TfLiteNode* node) {
  return tflite::micro::GetTensorData<int8_t>(tflite::micro::GetEvalOutput(context, node, 0));
}

namespace {

LinearFactor GetFactor(const TfLiteContext* context, const TfLiteNode* node, int first,
                       int32_t in, int32_t out) {
  return LinearFactor{InputInt8(context, node, first), InputInt32(context, node, first + 1),
                      InputInt32(context, node, first + 2), in, out};
}

}  // namespace

Linear GetLinear(const TfLiteContext* context, const TfLiteNode* node, int first, int32_t rank,
                 int32_t t_zp, int32_t in, int32_t out) {
  Linear layer = {};
  layer.rank = rank;
  layer.t_zp = t_zp;
  if (rank > 0) {
    layer.v = GetFactor(context, node, first, in, rank);
    layer.last = GetFactor(context, node, first + 3, rank, out);
  } else {
    layer.last = GetFactor(context, node, first, in, out);
  }
  return layer;
}

TfLiteStatus CheckAliasing(const char* op, const void* in, size_t in_bytes, const void* out,
                           size_t out_bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(in);
  const uintptr_t b = reinterpret_cast<uintptr_t>(out);
  if (a == b || a + in_bytes <= b || b + out_bytes <= a) return kTfLiteOk;
  MicroPrintf("%s: output partially overlaps the input (only exact aliasing is supported)", op);
  return kTfLiteError;
}

TfLiteStatus RequestScratch(TfLiteContext* context, const char* op, int64_t bytes,
                            int32_t* index) {
  if (bytes > kInt32Max) {
    MicroPrintf("%s: scratch too large", op);
    return kTfLiteError;
  }
  int buffer_index = -1;
  if (context->RequestScratchBufferInArena(context, static_cast<size_t>(bytes), &buffer_index) !=
      kTfLiteOk) {
    MicroPrintf("%s: could not request a scratch buffer of %ld bytes", op,
                static_cast<long>(bytes));
    return kTfLiteError;
  }
  *index = buffer_index;
  return kTfLiteOk;
}

}  // namespace mcuformer
