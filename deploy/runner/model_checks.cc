#include "deploy/runner/model_checks.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <vector>

#include "tensorflow/lite/micro/micro_interpreter.h"  // TFLITE_SCHEMA_VERSION
#include "tensorflow/lite/schema/schema_generated.h"

namespace mcuformer_runner {
namespace {

constexpr int64_t kMaxTensorBytes = INT32_MAX;
constexpr int32_t kArenaAlignment = 16;   // TFLM's MicroArenaBufferAlignment(): kernels rely on it
constexpr char kOfflinePlanName[] = "OfflineMemoryAllocation";

class Checker {
 public:
  Checker(const uint8_t* data, size_t size, char* why, size_t why_size)
      : data_(data), size_(size), why_(why), why_size_(why_size) {}

  bool Run();

 private:
  bool Reject(const char* format, ...) __attribute__((format(printf, 2, 3)));
  bool CheckTensor(size_t index, const tflite::Tensor& tensor);
  bool CheckQuantization(size_t index, const tflite::Tensor& tensor);
  bool CheckIndices(const char* what, const flatbuffers::Vector<int32_t>* indices, bool optional_allowed);
  bool HoldsConstant(int32_t tensor) const;
  bool CheckOperator(size_t index, const tflite::Operator& op);
  bool CheckOfflinePlan(const tflite::Buffer& buffer);
  bool CheckMetadata();

  const uint8_t* data_;
  size_t size_;
  char* why_;
  size_t why_size_;
  const tflite::Model* model_ = nullptr;
  const tflite::SubGraph* graph_ = nullptr;
  size_t num_tensors_ = 0;
  size_t num_buffers_ = 0;
  std::vector<int64_t> tensor_bytes_;
};

bool Checker::Reject(const char* format, ...) {
  va_list args;
  va_start(args, format);
  std::vsnprintf(why_, why_size_, format, args);
  va_end(args);
  return false;
}

// Element sizes of the types TFLM's kernels read; anything else is refused.
int ElementBytes(tflite::TensorType type) {
  switch (type) {
    case tflite::TensorType_INT8:
    case tflite::TensorType_UINT8:
    case tflite::TensorType_BOOL:
      return 1;
    case tflite::TensorType_INT16:
    case tflite::TensorType_UINT16:
    case tflite::TensorType_FLOAT16:
      return 2;
    case tflite::TensorType_INT32:
    case tflite::TensorType_UINT32:
    case tflite::TensorType_FLOAT32:
      return 4;
    case tflite::TensorType_INT64:
    case tflite::TensorType_FLOAT64:
      return 8;
    default:
      return 0;
  }
}

bool Checker::CheckQuantization(size_t index, const tflite::Tensor& tensor) {
  const tflite::QuantizationParameters* q = tensor.quantization();
  if (q == nullptr || q->scale() == nullptr || q->scale()->size() <= 1) return true;
  const size_t channels = q->scale()->size();
  const int rank = tensor.shape() ? static_cast<int>(tensor.shape()->size()) : 0;
  const int dim = q->quantized_dimension();
  if (dim < 0 || dim >= rank || static_cast<size_t>(tensor.shape()->Get(dim)) != channels) {
    return Reject("tensor %zu has %zu quantization scales for quantized dimension %d", index, channels, dim);
  }
  const size_t zero_points = q->zero_point() ? q->zero_point()->size() : 0;
  if (zero_points != 1 && zero_points != channels) {
    return Reject("tensor %zu has %zu zero points for %zu scales", index, zero_points, channels);
  }
  return true;
}

bool Checker::CheckTensor(size_t index, const tflite::Tensor& tensor) {
  const int element = ElementBytes(tensor.type());
  if (element == 0) return Reject("tensor %zu has type %d, which the runner does not support", index,
                                  static_cast<int>(tensor.type()));
  int64_t bytes = element;
  if (tensor.shape() != nullptr) {
    for (int32_t dim : *tensor.shape()) {
      if (dim < 0) return Reject("tensor %zu has a negative dimension (%d)", index, dim);
      bytes *= dim;
      if (bytes > kMaxTensorBytes) return Reject("tensor %zu is larger than 2 GiB", index);
    }
  }
  tensor_bytes_[index] = bytes;
  if (tensor.sparsity() != nullptr) return Reject("tensor %zu is sparse, which TFLM does not run", index);
  if (tensor.buffer() >= num_buffers_) {
    return Reject("tensor %zu uses buffer %u of %zu", index, tensor.buffer(), num_buffers_);
  }
  const flatbuffers::Vector<uint8_t>* constant = model_->buffers()->Get(tensor.buffer())->data();
  if (constant != nullptr && constant->size() != 0) {
    if (static_cast<int64_t>(constant->size()) != bytes) {
      return Reject("tensor %zu holds %u bytes of data for a shape of %lld bytes", index, constant->size(),
                    static_cast<long long>(bytes));
    }
    if ((constant->data() - data_) % element != 0) {
      return Reject("tensor %zu's data is not aligned to its %d-byte elements", index, element);
    }
  }
  return CheckQuantization(index, tensor);
}

bool Checker::CheckIndices(const char* what, const flatbuffers::Vector<int32_t>* indices,
                           bool optional_allowed) {
  if (indices == nullptr) return Reject("%s tensors are missing", what);
  for (int32_t index : *indices) {
    if (optional_allowed && index == -1) continue;       // an omitted optional input
    if (index < 0 || static_cast<size_t>(index) >= num_tensors_) {
      return Reject("%s tensor %d is out of range (%zu tensors)", what, index, num_tensors_);
    }
  }
  return true;
}

bool Checker::HoldsConstant(int32_t tensor) const {
  const flatbuffers::Vector<uint8_t>* data = model_->buffers()->Get(graph_->tensors()->Get(tensor)->buffer())->data();
  return data != nullptr && data->size() != 0;
}

bool Checker::CheckOperator(size_t index, const tflite::Operator& op) {
  const size_t codes = model_->operator_codes()->size();
  if (op.opcode_index() >= codes) return Reject("operator %zu uses opcode %u of %zu", index, op.opcode_index(), codes);
  char what[48];
  std::snprintf(what, sizeof(what), "operator %zu input", index);
  if (!CheckIndices(what, op.inputs(), true)) return false;
  std::snprintf(what, sizeof(what), "operator %zu output", index);
  if (!CheckIndices(what, op.outputs(), false)) return false;
  std::snprintf(what, sizeof(what), "operator %zu intermediate", index);
  if (op.intermediates() != nullptr && !CheckIndices(what, op.intermediates(), false)) return false;
  for (int32_t output : *op.outputs()) {
    if (HoldsConstant(output)) return Reject("operator %zu writes tensor %d, which holds constant data", index, output);
  }
  return true;
}

bool Checker::CheckOfflinePlan(const tflite::Buffer& buffer) {
  const flatbuffers::Vector<uint8_t>* plan = buffer.data();
  const size_t want = (3 + num_tensors_) * sizeof(int32_t);
  if (plan == nullptr || plan->size() != want) {
    return Reject("the offline memory plan holds %u bytes, %zu tensors need %zu", plan ? plan->size() : 0,
                  num_tensors_, want);
  }
  if ((plan->data() - data_) % sizeof(int32_t) != 0) return Reject("the offline memory plan is not 4-byte aligned");
  int32_t words[3];
  std::memcpy(words, plan->data(), sizeof(words));
  if (words[1] != 0 || words[2] < 0 || static_cast<size_t>(words[2]) != num_tensors_) {
    return Reject("the offline memory plan is for subgraph %d with %d tensors, the model has 1 with %zu",
                  words[1], words[2], num_tensors_);
  }
  for (size_t i = 0; i < num_tensors_; ++i) {
    int32_t offset;
    std::memcpy(&offset, plan->data() + (3 + i) * sizeof(int32_t), sizeof(offset));
    const bool placed = offset >= 0 && offset % kArenaAlignment == 0 && offset + tensor_bytes_[i] <= kMaxTensorBytes;
    if (offset != -1 && !placed) {
      return Reject("the offline memory plan puts tensor %zu at offset %d (not -1 or a multiple of %d)", i, offset,
                    kArenaAlignment);
    }
  }
  return true;
}

bool Checker::CheckMetadata() {
  if (model_->metadata() == nullptr) return true;
  for (const tflite::Metadata* meta : *model_->metadata()) {
    if (meta->buffer() >= num_buffers_) {
      return Reject("metadata uses buffer %u of %zu", meta->buffer(), num_buffers_);
    }
    const flatbuffers::String* name = meta->name();
    if (name != nullptr && name->size() == std::strlen(kOfflinePlanName) &&
        std::memcmp(name->data(), kOfflinePlanName, name->size()) == 0 &&
        !CheckOfflinePlan(*model_->buffers()->Get(meta->buffer()))) {
      return false;
    }
  }
  return true;
}

bool Checker::Run() {
  if (size_ < 8) return Reject("%zu bytes is too short for a .tflite", size_);
  flatbuffers::Verifier verifier(data_, size_);
  if (!tflite::VerifyModelBuffer(verifier)) {
    return Reject("not a valid .tflite flatbuffer (the flatbuffers verifier rejects it: truncated or corrupt)");
  }
  model_ = tflite::GetModel(data_);
  if (model_->version() != TFLITE_SCHEMA_VERSION) {
    return Reject("schema version %u, expected %d", model_->version(), TFLITE_SCHEMA_VERSION);
  }
  if (model_->subgraphs() == nullptr || model_->subgraphs()->size() != 1) {
    return Reject("%u subgraphs, expected 1", model_->subgraphs() ? model_->subgraphs()->size() : 0);
  }
  if (model_->buffers() == nullptr || model_->operator_codes() == nullptr) {
    return Reject("no buffers or no operator codes");
  }
  graph_ = model_->subgraphs()->Get(0);
  if (graph_->tensors() == nullptr || graph_->operators() == nullptr || graph_->inputs() == nullptr ||
      graph_->outputs() == nullptr || graph_->inputs()->size() == 0 || graph_->outputs()->size() == 0) {
    return Reject("the subgraph lacks tensors, operators, inputs or outputs");
  }
  num_tensors_ = graph_->tensors()->size();
  num_buffers_ = model_->buffers()->size();
  tensor_bytes_.assign(num_tensors_, 0);
  for (size_t i = 0; i < num_tensors_; ++i) {
    if (!CheckTensor(i, *graph_->tensors()->Get(i))) return false;
  }
  for (size_t i = 0; i < graph_->operators()->size(); ++i) {
    if (!CheckOperator(i, *graph_->operators()->Get(i))) return false;
  }
  if (!CheckIndices("subgraph input", graph_->inputs(), false) ||
      !CheckIndices("subgraph output", graph_->outputs(), false)) {
    return false;
  }
  for (int32_t input : *graph_->inputs()) {
    if (HoldsConstant(input)) return Reject("subgraph input tensor %d holds constant data", input);
  }
  return CheckMetadata();
}

}  // namespace

bool CheckModel(const uint8_t* data, size_t size, char* why, size_t why_size) {
  if (why_size) why[0] = '\0';
  return Checker(data, size, why, why_size).Run();
}

}  // namespace mcuformer_runner
