// Test driver of the MCUF_* kernels (driven by tests/test_kernels.py).
//
// Host:
//   kernel_test ops CASES RESULTS   run every case of CASES, write RESULTS
//   kernel_test fixedpoint IN OUT   evaluate the fixed-point helpers on IN
// Cortex-M (built with -DMCUF_EMBEDDED_CASES, run under QEMU): runs the case
// file compiled in as mcuf_cases[] and prints RESULTS as "@@hex" lines.
//
// Each case runs Init/Prepare/Eval like TFLM's KernelRunner, on a
// FakeMicroContext whose persistent and scratch buffers are separate heap
// blocks of exactly the requested size (so ASan sees any overrun). The file
// formats are documented in tflm_ops/test/kernel_cases.py.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/kernels/internal/common.h"
#include "tensorflow/lite/micro/arena_allocator/single_arena_buffer_allocator.h"
#include "tensorflow/lite/micro/fake_micro_context.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/mock_micro_graph.h"
#include "tensorflow/lite/micro/test_helpers.h"
#include "tflm_ops/src/mcuf_fixedpoint.h"
#include "tflm_ops/src/mcuf_ops.h"
#ifdef MCUF_EMBEDDED_CASES
#include "deploy/make/platform/platform.h"
#endif

namespace {

enum Status : int32_t { kOk = 0, kPrepareFailed = 1, kEvalFailed = 2, kBadCase = 3 };

class Reader {
 public:
  Reader(const uint8_t* bytes, size_t size) : bytes_(bytes), size_(size) {}
  bool ok() const { return ok_; }
  template <typename T>
  T Get() {
    T value{};
    const uint8_t* p = Take(sizeof(T));
    if (p != nullptr) memcpy(&value, p, sizeof(T));
    return value;
  }
  const uint8_t* Take(size_t n) {
    if (!ok_ || n > size_ - pos_) {
      ok_ = false;
      return nullptr;
    }
    pos_ += n;
    return bytes_ + pos_ - n;
  }
  bool Magic(const char* magic) {
    const uint8_t* got = Take(8);
    return got != nullptr && memcmp(got, magic, 8) == 0;
  }

 private:
  const uint8_t* bytes_;
  size_t size_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// Result bytes: kept in memory on the host, printed as "@@hex" lines of 32
// bytes as they come on the MCU (whose heap is small).
class Writer {
 public:
  template <typename T>
  void Put(T value) {
    PutBytes(&value, sizeof(T));
  }
  void PutBytes(const void* data, size_t n) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
#ifdef MCUF_EMBEDDED_CASES
    for (size_t i = 0; i < n; ++i) {
      line_[used_++] = p[i];
      if (used_ == sizeof(line_)) Flush();
    }
#else
    bytes_.insert(bytes_.end(), p, p + n);
#endif
  }
#ifdef MCUF_EMBEDDED_CASES
  void Flush();
#else
  const std::vector<uint8_t>& bytes() const { return bytes_; }
#endif

 private:
#ifdef MCUF_EMBEDDED_CASES
  uint8_t line_[32];
  size_t used_ = 0;
#else
  std::vector<uint8_t> bytes_;
#endif
};

#ifdef MCUF_EMBEDDED_CASES
void Log(const char* line) { mcuf_platform_write(line); }
#else
void Log(const char* line) { fputs(line, stderr); }
#endif

// Memory blocks of tensors and kernel buffers: exact-size heap blocks on the
// host (ASan checks their bounds); on the MCU a bump pool reset per case, as
// the heap there is small.
#ifdef MCUF_EMBEDDED_CASES
alignas(16) uint8_t block_pool[1 << 20];
size_t block_pool_used = 0;
void* AllocBlock(size_t bytes) {
  const size_t start = (block_pool_used + 15) & ~static_cast<size_t>(15);
  if (start + bytes > sizeof(block_pool)) {
    Log("harness: block pool exhausted\n");
    mcuf_platform_exit(1);
  }
  block_pool_used = start + bytes;
  return block_pool + start;
}
void FreeBlock(void*) {}
void ResetBlocks() { block_pool_used = 0; }
#else
void* AllocBlock(size_t bytes) {
  void* block = malloc(bytes > 0 ? bytes : 1);
  if (block == nullptr) abort();
  return block;
}
void FreeBlock(void* block) { free(block); }
void ResetBlocks() {}
#endif

#ifdef MCUF_EMBEDDED_CASES
void Writer::Flush() {
  if (used_ == 0) return;
  char line[8 + 2 * sizeof(line_)] = "@@hex ";
  size_t n = 6;
  for (size_t i = 0; i < used_; ++i) n += snprintf(line + n, sizeof(line) - n, "%02x", line_[i]);
  snprintf(line + n, sizeof(line) - n, "\n");
  Log(line);
  used_ = 0;
}
#endif

// Persistent and scratch buffers as separate blocks, counted per case.
class TestMicroContext : public tflite::FakeMicroContext {
 public:
  using tflite::FakeMicroContext::FakeMicroContext;
  static void operator delete(void*) {}  // lives on the stack only (TFLM bans heap delete)
  ~TestMicroContext() {
    for (void* block : blocks_) FreeBlock(block);
  }
  void* AllocatePersistentBuffer(size_t bytes) override {
    persistent_bytes_ += bytes;
    return Keep(bytes);
  }
  TfLiteStatus RequestScratchBufferInArena(size_t bytes, int* index) override {
    scratch_bytes_.push_back(bytes);
    scratch_.push_back(Keep(bytes));
    memset(scratch_.back(), 0xA5, bytes);  // kernels must not rely on zeroed scratch
    *index = static_cast<int>(scratch_.size()) - 1;
    return kTfLiteOk;
  }
  void* GetScratchBuffer(int index) override {
    return index >= 0 && index < static_cast<int>(scratch_.size()) ? scratch_[index] : nullptr;
  }
  size_t persistent_bytes() const { return persistent_bytes_; }
  const std::vector<size_t>& scratch_bytes() const { return scratch_bytes_; }

 private:
  void* Keep(size_t bytes) {
    blocks_.push_back(AllocBlock(bytes));
    return blocks_.back();
  }
  std::vector<void*> blocks_;
  std::vector<void*> scratch_;
  std::vector<size_t> scratch_bytes_;
  size_t persistent_bytes_ = 0;
};

const TFLMRegistration* OpRegistration(uint32_t op) {
  switch (op) {
    case 0: return mcuformer::Register_MCUF_PATCH_EMBED();
    case 1: return mcuformer::Register_MCUF_ATTENTION();
    case 2: return mcuformer::Register_MCUF_MLP();
    case 3: return mcuformer::Register_MCUF_HEAD();
    default: return nullptr;
  }
}

size_t TypeBytes(TfLiteType type) {
  return type == kTfLiteInt32 ? 4 : (type == kTfLiteInt8 ? 1 : 0);
}

struct CaseTensor {
  TfLiteType type;
  std::vector<int> dims;  // TfLiteIntArray layout: size, then dims
  int32_t zero_point;
  float scale;
  const uint8_t* data;  // in the case file
  size_t size;
};

bool ReadTensor(Reader& in, CaseTensor* t) {
  t->type = static_cast<TfLiteType>(in.Get<int32_t>());
  const int32_t ndims = in.Get<int32_t>();
  if (!in.ok() || ndims < 0 || ndims > 8) return false;
  t->dims.assign(1, ndims);
  for (int32_t i = 0; i < ndims; ++i) t->dims.push_back(in.Get<int32_t>());
  t->zero_point = in.Get<int32_t>();
  t->scale = in.Get<float>();
  const uint32_t nbytes = in.Get<uint32_t>();
  const uint8_t* data = in.Take(nbytes);
  if (!in.ok()) return false;
  t->data = data;
  t->size = nbytes;
  return true;
}

size_t ElementCount(const CaseTensor& t) {
  size_t n = 1;
  for (size_t i = 1; i < t.dims.size(); ++i) n *= t.dims[i] > 0 ? static_cast<size_t>(t.dims[i]) : 0;
  return n;
}

// One case: appends its result record to `out` unless the case is malformed.
Status RunCase(Reader& in, Writer& out) {
  const uint32_t op = in.Get<uint32_t>();
  const uint32_t flags = in.Get<uint32_t>();
  const uint32_t n_inputs = in.Get<uint32_t>();
  const uint32_t options_len = in.Get<uint32_t>();
  const uint8_t* options = in.Take(options_len);
  if (!in.ok() || n_inputs > 64) return kBadCase;
  std::vector<CaseTensor> tensors(n_inputs + 1);
  for (CaseTensor& t : tensors) {
    if (!ReadTensor(in, &t)) return kBadCase;
  }
  const TFLMRegistration* registration = OpRegistration(op);
  if (registration == nullptr) return kBadCase;
  const bool in_place = (flags & 3) != 0;
  // Flag 2: the output starts one byte into the first input (a partial overlap).
  const size_t shift = (flags & 2) != 0 ? 1 : 0;

  ResetBlocks();
  // Blocks of exactly the tensor sizes; in place, the output shares the
  // first input's block (sized for the larger of the two).
  CaseTensor& result = tensors[n_inputs];
  const size_t out_bytes = ElementCount(result) * TypeBytes(result.type);
  std::vector<void*> blocks;
  std::vector<TfLiteTensor> tf(n_inputs + 1);
  for (uint32_t i = 0; i <= n_inputs; ++i) {
    CaseTensor& t = tensors[i];
    size_t bytes = i == n_inputs ? out_bytes : t.size;
    if (in_place && i == 0 && out_bytes + shift > bytes) bytes = out_bytes + shift;
    void* block = nullptr;
    if (!(in_place && i == n_inputs)) {
      block = AllocBlock(bytes);
      memset(block, 0x5A, bytes);
      if (i < n_inputs) memcpy(block, t.data, t.size);
      blocks.push_back(block);
    }
    TfLiteTensor& x = tf[i];
    x = TfLiteTensor{};
    x.type = t.type;
    x.dims = tflite::testing::IntArrayFromInts(t.dims.data());
    x.data.data = (in_place && i == n_inputs) ? static_cast<uint8_t*>(blocks[0]) + shift : block;
    x.bytes = i == n_inputs ? out_bytes : t.size;
    x.params.zero_point = t.zero_point;
    x.params.scale = t.scale;
    x.allocation_type = (i == 0 || i == n_inputs) ? kTfLiteArenaRw : kTfLiteMmapRo;
  }

  std::vector<int> input_ids(1, static_cast<int>(n_inputs));
  for (uint32_t i = 0; i < n_inputs; ++i) input_ids.push_back(static_cast<int>(i));
  int output_ids[2] = {1, static_cast<int>(n_inputs)};

  alignas(16) static uint8_t arena[1 << 16];
  tflite::SingleArenaBufferAllocator* allocator =
      tflite::SingleArenaBufferAllocator::Create(arena, sizeof(arena));
  tflite::MockMicroGraph graph(allocator);
  TestMicroContext micro_context(tf.data(), allocator, &graph);
  TfLiteContext context = {};
  context.impl_ = &micro_context;
  context.ReportError = tflite::MicroContextReportOpError;
  context.GetTensor = tflite::MicroContextGetTensor;
  context.GetEvalTensor = tflite::MicroContextGetEvalTensor;
  context.AllocatePersistentBuffer = tflite::MicroContextAllocatePersistentBuffer;
  context.RequestScratchBufferInArena = tflite::MicroContextRequestScratchBufferInArena;
  context.GetScratchBuffer = tflite::MicroContextGetScratchBuffer;
  TfLiteNode node = {};
  node.inputs = tflite::testing::IntArrayFromInts(input_ids.data());
  node.outputs = tflite::testing::IntArrayFromInts(output_ids);

  Status status = kOk;
  node.user_data = registration->init(&context, reinterpret_cast<const char*>(options), options_len);
  if (registration->prepare(&context, &node) != kTfLiteOk) {
    status = kPrepareFailed;
  } else if (!micro_context.IsAllTempTfLiteTensorDeallocated()) {
    Log("harness: Prepare leaked temporary tensors\n");
    status = kPrepareFailed;
  } else {
#ifdef MCUF_EMBEDDED_CASES
    mcuf_invoke_begin();  // QEMU's instruction counter counts each Eval
#endif
    const TfLiteStatus invoked = registration->invoke(&context, &node);
#ifdef MCUF_EMBEDDED_CASES
    mcuf_invoke_end();
#endif
    if (invoked != kTfLiteOk) status = kEvalFailed;
  }
  out.Put<int32_t>(status);
  out.Put<uint32_t>(static_cast<uint32_t>(micro_context.persistent_bytes()));
  out.Put<uint32_t>(static_cast<uint32_t>(micro_context.scratch_bytes().size()));
  for (size_t bytes : micro_context.scratch_bytes()) out.Put<uint32_t>(static_cast<uint32_t>(bytes));
  const uint32_t result_bytes = status == kOk ? static_cast<uint32_t>(out_bytes) : 0;
  out.Put<uint32_t>(result_bytes);
  out.PutBytes(tf[n_inputs].data.data, result_bytes);
  for (void* block : blocks) FreeBlock(block);
  return status;
}

// Runs every case of a case file; false if the file is malformed.
bool RunOps(Reader& in, Writer& out) {
  if (!in.Magic("MCUFKT01")) return false;
  const uint32_t count = in.Get<uint32_t>();
  out.PutBytes("MCUFKR01", 8);
  out.Put<uint32_t>(count);
  for (uint32_t i = 0; i < count; ++i) {
    char marker[32];
    snprintf(marker, sizeof(marker), "@@case %u\n", static_cast<unsigned>(i));
    Log(marker);
    if (RunCase(in, out) == kBadCase) return false;
  }
  return true;
}

// IN: "MCUFFP01", u32 n, then n records (i32 x, i32 m, i32 s, u64 v, i64 num, i64 den).
// OUT: "MCUFFR01", u32 n, n records (i32 mcuf_mbqm, i32 tflite::MultiplyByQuantizedMultiplier,
// u64 mcuf_isqrt64(v), i64 mcuf_rdiv(num, den)), then the 256 EXP2_Q15 entries (i32).
void RunFixedPoint(Reader& in, Writer& out) {
  if (!in.Magic("MCUFFP01")) return;
  const uint32_t count = in.Get<uint32_t>();
  out.PutBytes("MCUFFR01", 8);
  out.Put<uint32_t>(count);
  for (uint32_t i = 0; i < count && in.ok(); ++i) {
    const int32_t x = in.Get<int32_t>(), m = in.Get<int32_t>(), s = in.Get<int32_t>();
    const uint64_t v = in.Get<uint64_t>();
    const int64_t num = in.Get<int64_t>(), den = in.Get<int64_t>();
    out.Put<int32_t>(mcuf_mbqm(x, m, s));
    out.Put<int32_t>(tflite::MultiplyByQuantizedMultiplier(x, m, s));
    out.Put<uint64_t>(mcuf_isqrt64(v));
    out.Put<int64_t>(mcuf_rdiv(num, den));
  }
  for (int f = 0; f < 256; ++f) out.Put<int32_t>(MCUF_EXP2_Q15[f]);
}

}  // namespace

#ifdef MCUF_EMBEDDED_CASES
extern const unsigned char mcuf_cases[];
extern const unsigned int mcuf_cases_len;

int main() {
  mcuf_platform_init();
  Reader in(mcuf_cases, mcuf_cases_len);
  Writer out;
  const bool ok = RunOps(in, out);
  out.Flush();
  Log(ok ? "@@end\n" : "harness: malformed case file\n");
  mcuf_platform_exit(ok ? 0 : 1);
}
#else
namespace {

std::vector<uint8_t> ReadFile(const char* path) {
  std::vector<uint8_t> bytes;
  FILE* f = fopen(path, "rb");
  if (f == nullptr) return bytes;
  int c;
  while ((c = fgetc(f)) != EOF) bytes.push_back(static_cast<uint8_t>(c));
  fclose(f);
  return bytes;
}

bool WriteFile(const char* path, const std::vector<uint8_t>& bytes) {
  FILE* f = fopen(path, "wb");
  if (f == nullptr) return false;
  const bool ok = fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  return fclose(f) == 0 && ok;
}

}  // namespace

int main(int argc, char** argv) {
  const bool ops = argc == 4 && strcmp(argv[1], "ops") == 0;
  if (!ops && !(argc == 4 && strcmp(argv[1], "fixedpoint") == 0)) {
    fprintf(stderr, "usage: %s ops CASES RESULTS | fixedpoint IN OUT\n", argv[0]);
    return 2;
  }
  const std::vector<uint8_t> bytes = ReadFile(argv[2]);
  Reader in(bytes.data(), bytes.size());
  Writer out;
  bool ok = true;
  if (ops) {
    ok = RunOps(in, out);
  } else {
    RunFixedPoint(in, out);
    ok = in.ok();
  }
  if (!ok) fprintf(stderr, "harness: %s is malformed\n", argv[2]);
  return ok && WriteFile(argv[3], out.bytes()) ? 0 : 2;
}
#endif
