#include "deploy/runner/op_resolver.h"

#include "tflm_ops/src/mcuf_ops.h"

namespace mcuformer_runner {
namespace {

using Adder = TfLiteStatus (*)(Resolver&);

#define MCUF_BUILTIN(OP, ADD) \
  { tflite::BuiltinOperator_##OP, [](Resolver& r) { return r.ADD(); } }

struct Builtin {
  tflite::BuiltinOperator op;
  Adder add;
};

// Ops seen in TFLiteConverter int8 ViT graphs (patch conv, decomposed
// LayerNorm, attention as BATCH_MATMUL/SOFTMAX, sigmoid-GELU, pooling, head).
const Builtin kBuiltins[] = {
    MCUF_BUILTIN(ADD, AddAdd),
    MCUF_BUILTIN(BATCH_MATMUL, AddBatchMatMul),
    MCUF_BUILTIN(CONCATENATION, AddConcatenation),
    MCUF_BUILTIN(CONV_2D, AddConv2D),
    MCUF_BUILTIN(DEPTHWISE_CONV_2D, AddDepthwiseConv2D),
    MCUF_BUILTIN(DEQUANTIZE, AddDequantize),
    MCUF_BUILTIN(DIV, AddDiv),
    MCUF_BUILTIN(EXPAND_DIMS, AddExpandDims),
    MCUF_BUILTIN(FULLY_CONNECTED, AddFullyConnected),
    MCUF_BUILTIN(GATHER, AddGather),
    MCUF_BUILTIN(HARD_SWISH, AddHardSwish),
    MCUF_BUILTIN(LOGISTIC, AddLogistic),
    MCUF_BUILTIN(MEAN, AddMean),
    MCUF_BUILTIN(MUL, AddMul),
    MCUF_BUILTIN(PACK, AddPack),
    MCUF_BUILTIN(PAD, AddPad),
    MCUF_BUILTIN(QUANTIZE, AddQuantize),
    MCUF_BUILTIN(RELU, AddRelu),
    MCUF_BUILTIN(RESHAPE, AddReshape),
    MCUF_BUILTIN(RSQRT, AddRsqrt),
    MCUF_BUILTIN(SHAPE, AddShape),
    MCUF_BUILTIN(SLICE, AddSlice),
    MCUF_BUILTIN(SOFTMAX, AddSoftmax),
    MCUF_BUILTIN(SPLIT, AddSplit),
    MCUF_BUILTIN(SPLIT_V, AddSplitV),
    MCUF_BUILTIN(SQRT, AddSqrt),
    MCUF_BUILTIN(SQUARED_DIFFERENCE, AddSquaredDifference),
    MCUF_BUILTIN(SQUEEZE, AddSqueeze),
    MCUF_BUILTIN(STRIDED_SLICE, AddStridedSlice),
    MCUF_BUILTIN(SUB, AddSub),
    MCUF_BUILTIN(SUM, AddSum),
    MCUF_BUILTIN(TANH, AddTanh),
    MCUF_BUILTIN(TRANSPOSE, AddTranspose),
    MCUF_BUILTIN(UNPACK, AddUnpack),
};

}  // namespace

TfLiteStatus AddCustomOps(Resolver& resolver) { return mcuformer::RegisterOps(resolver); }

TfLiteStatus AddBuiltinOps(Resolver& resolver) {
  for (const Builtin& builtin : kBuiltins) {
    if (resolver.FindOp(builtin.op) != nullptr) continue;
    TF_LITE_ENSURE_STATUS(builtin.add(resolver));
  }
  return kTfLiteOk;
}

}  // namespace mcuformer_runner
