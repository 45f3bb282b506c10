// MCUF_PATCH_EMBED (tflm_ops/SPEC.md 2.1): decomposed patch embedding, one
// strip of patches at a time, tokens written over the consumed image.
#include <string.h>

#include "mcuf_op_common.h"
#include "mcuf_ops.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace mcuformer {
namespace {

constexpr const char* kOp = "MCUF_PATCH_EMBED";
enum { kVersion, kPatch, kHasCls, kPosZp, kPosMult, kPosShift, kNumOptions };
const OptionSpec kSpecs[kNumOptions] = {
    {"version", kOpVersion, kOpVersion}, {"patch", 1, 4096},
    {"has_cls", 0, 1},                   {"pos_zp", -128, 127},
    {"pos_mult", -kInt32Max, kInt32Max}, {"pos_shift", -31, 30}};
enum { kImage, kWeights, kBias, kRq, kPos, kCls };

struct OpData {
  Options<kNumOptions> options;
  int32_t height, width, channels, embed, tokens, out_zp;
  int32_t scratch_index;

  int32_t patch() const { return options.value[kPatch]; }
  int32_t has_cls() const { return options.value[kHasCls]; }
  int32_t patch_bytes() const { return patch() * patch() * channels; }
  int32_t grid_w() const { return width / patch(); }
};
static_assert(sizeof(OpData) == kPatchEmbedOpDataBytes, "update SPEC.md's persistent bytes");

// Scratch segments (tflm_ops/contract.py), in order.
enum { kScratchStrip, kScratchPatch, kNumScratch };

ScratchLayout<kNumScratch> ScratchOf(const OpData& d) {
  int64_t size[kNumScratch];
  size[kScratchStrip] = int64_t{d.grid_w()} * d.embed;
  size[kScratchPatch] = d.patch_bytes();
  return LayoutScratch(size);
}

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitOpData<OpData>(context, buffer, length, kSpecs);
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  OpData* d = PreparedOpData<OpData>(node, kOp, kSpecs);
  if (d == nullptr) return kTfLiteError;
  const int32_t* opt = d->options.value;
  if (!IsValidMultiplier(opt[kPosMult], opt[kPosShift])) {
    MicroPrintf("%s: pos_mult/pos_shift is not a valid multiplier", kOp);
    return kTfLiteError;
  }
  if (!ExpectCounts(node, kOp, 5 + d->has_cls())) return kTfLiteError;
  int32_t image[4], out[3], image_zp;
  if (!ReadActivationShape(context, node, kOp, false, kImage, 4, image, &image_zp) ||
      !ReadActivationShape(context, node, kOp, true, 0, 3, out, &d->out_zp)) {
    return kTfLiteError;
  }
  d->height = image[1];
  d->width = image[2];
  d->channels = image[3];
  d->tokens = out[1];
  d->embed = out[2];
  const int64_t image_bytes = int64_t{image[1]} * image[2] * image[3];
  const int64_t patch_bytes = int64_t{d->patch()} * d->patch() * d->channels;
  if (image[0] != 1 || out[0] != 1 || image_bytes > kInt32Max || patch_bytes > kMaxSize ||
      d->height % d->patch() != 0 || d->width % d->patch() != 0) {
    MicroPrintf("%s: image [1, H, W, C] must have H and W multiples of patch %ld and "
                "P*P*C <= %ld", kOp, static_cast<long>(d->patch()), static_cast<long>(kMaxSize));
    return kTfLiteError;
  }
  const int64_t tokens = int64_t{d->height / d->patch()} * d->grid_w() + d->has_cls();
  if (d->tokens != tokens || tokens > kMaxSize || d->embed > kMaxSize ||
      tokens * d->embed > kInt32Max) {
    MicroPrintf("%s: output must be [1, %ld, E] with T, E <= %ld", kOp, static_cast<long>(tokens),
                static_cast<long>(kMaxSize));
    return kTfLiteError;
  }
  if (!ExpectLinear(context, node, kOp, "patch", kWeights, 0, d->patch_bytes(), d->embed) ||
      !ExpectTensor(context, node, kOp, false, kPos, "pos", kTfLiteInt8, {d->tokens, d->embed}) ||
      (d->has_cls() &&
       !ExpectTensor(context, node, kOp, false, kCls, "cls", kTfLiteInt8, {d->embed}))) {
    return kTfLiteError;
  }
  return RequestScratch(context, kOp, ScratchOf(*d).bytes, &d->scratch_index);
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const OpData& d = *static_cast<const OpData*>(node->user_data);
  const int32_t* opt = d.options.value;
  const int8_t* image = InputInt8(context, node, kImage);
  const LinearFactor linear =
      GetLinear(context, node, kWeights, 0, 0, d.patch_bytes(), d.embed).last;
  const int8_t* pos = InputInt8(context, node, kPos);
  int8_t* tokens = OutputInt8(context, node);
  TF_LITE_ENSURE_OK(context, CheckAliasing(kOp, image, d.height * d.width * d.channels, tokens,
                                           d.tokens * d.embed));

  const int32_t p = d.patch(), grid_h = d.height / p, grid_w = d.grid_w(), e_dim = d.embed;
  const int32_t row_bytes = p * d.channels;
  int8_t* scratch = static_cast<int8_t*>(context->GetScratchBuffer(context, d.scratch_index));
  const ScratchLayout<kNumScratch> layout = ScratchOf(d);
  int8_t* strip = scratch + layout.offset[kScratchStrip];
  int8_t* patch = scratch + layout.offset[kScratchPatch];
  // Strip order keeps every write on image bytes already consumed (SPEC 2.1).
  const bool top_down = e_dim <= d.patch_bytes();
  for (int32_t step = 0; step < grid_h; ++step) {
    const int32_t r = top_down ? step : grid_h - 1 - step;
    for (int32_t c = 0; c < grid_w; ++c) {
      for (int32_t py = 0; py < p; ++py) {
        memcpy(patch + py * row_bytes, image + ((r * p + py) * d.width + c * p) * d.channels,
               row_bytes);
      }
      const int8_t* pos_row = pos + (r * grid_w + c) * e_dim;
      int8_t* token = strip + c * e_dim;
      ForEachAcc(linear, patch, 0, e_dim, [&](int32_t e, int32_t acc) {
        token[e] = static_cast<int8_t>(
            mcuf_sat8(int64_t{d.out_zp} + mcuf_mbqm(acc, linear.rq[2 * e], linear.rq[2 * e + 1]) +
                      mcuf_mbqm(pos_row[e] - opt[kPosZp], opt[kPosMult], opt[kPosShift])));
      });
    }
    memcpy(tokens + r * grid_w * e_dim, strip, grid_w * e_dim);
  }
  if (d.has_cls()) memcpy(tokens + (d.tokens - 1) * e_dim, InputInt8(context, node, kCls), e_dim);
  return kTfLiteOk;
}

}  // namespace

const TFLMRegistration* Register_MCUF_PATCH_EMBED() {
  return StaticRegistration<Init, Prepare, Eval>();
}

}  // namespace mcuformer
