// MCUF_PATCH_EMBED (tflm_ops/SPEC.md 2.1): decomposed patch embedding (a
// K x K convolution of stride P, K >= P, zero-point padded), one strip of
// patches at a time, tokens written over the consumed image.
#include <string.h>

#include "mcuf_op_common.h"
#include "mcuf_ops.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace mcuformer {
namespace {

constexpr const char* kOp = "MCUF_PATCH_EMBED";
enum { kVersion, kPatch, kKernel, kHasCls, kPosZp, kPosMult, kPosShift, kNumOptions };
// Version 2 added `kernel` (SPEC 4); the other ops are at kOpVersion.
const OptionSpec kSpecs[kNumOptions] = {
    {"version", 2, 2},                   {"patch", 1, 4096},
    {"kernel", 1, 4096},                 {"has_cls", 0, 1},
    {"pos_zp", -128, 127},               {"pos_mult", -kInt32Max, kInt32Max},
    {"pos_shift", -31, 30}};
enum { kImage, kWeights, kBias, kRq, kPos, kCls };

struct OpData {
  Options<kNumOptions> options;
  int32_t height, width, channels, embed, tokens, out_zp, image_zp;
  int32_t scratch_index;

  int32_t patch() const { return options.value[kPatch]; }
  int32_t kernel() const { return options.value[kKernel]; }
  int32_t has_cls() const { return options.value[kHasCls]; }
  int32_t patch_bytes() const { return patch() * patch() * channels; }
  int32_t window_bytes() const { return kernel() * kernel() * channels; }
  int32_t grid_w() const { return width / patch(); }
  int32_t pad() const { return (kernel() - patch()) / 2; }
  int32_t top_down() const { return embed <= patch_bytes(); }
  int32_t halo_rows() const { return top_down() ? pad() : kernel() - patch() - pad(); }
};
static_assert(sizeof(OpData) == kPatchEmbedOpDataBytes, "update SPEC.md's persistent bytes");

// Scratch segments (tflm_ops/contract.py), in order.
enum { kScratchStrip, kScratchHalo, kScratchPatch, kNumScratch };

ScratchLayout<kNumScratch> ScratchOf(const OpData& d) {
  int64_t size[kNumScratch];
  size[kScratchStrip] = int64_t{d.grid_w()} * d.embed;
  size[kScratchHalo] = int64_t{d.halo_rows()} * d.grid_w() * d.patch() * d.channels;
  size[kScratchPatch] = d.window_bytes();
  return LayoutScratch(size);
}

// Where the strip being computed reads input row y (SPEC 2.1): rows outside
// the image are padding (nullptr); the halo holds rows
// [halo_first, halo_first + halo_rows) that written tokens may have overwritten.
struct InputRows {
  const int8_t* image;
  int8_t* halo;
  int32_t height, row_bytes, halo_first, halo_rows;

  const int8_t* Row(int32_t y) const {
    if (y < 0 || y >= height) return nullptr;
    if (y >= halo_first && y < halo_first + halo_rows) return halo + (y - halo_first) * row_bytes;
    return image + y * row_bytes;
  }

  // Moves the halo to start at `first`, each row copied from where it is now;
  // the copy order never overwrites a halo row before it is moved.
  void MoveHalo(int32_t first) {
    const bool down = first > halo_first;
    for (int32_t k = 0; k < halo_rows; ++k) {
      const int32_t i = down ? k : halo_rows - 1 - k;
      const int8_t* row = Row(first + i);
      if (row != nullptr) memmove(halo + i * row_bytes, row, row_bytes);
    }
    halo_first = first;
  }
};

// Gathers the K x K x C window whose top-left input pixel is (y0, x0), in
// (ky, kx, ch) order, padding with the image zero point.
void GatherWindow(const OpData& d, const InputRows& rows, int32_t y0, int32_t x0, int8_t* out) {
  const int32_t k = d.kernel(), ch = d.channels, line = k * ch;
  const int32_t x_begin = x0 < 0 ? -x0 : 0;
  const int32_t x_end = x0 + k > d.width ? d.width - x0 : k;
  for (int32_t ky = 0; ky < k; ++ky, out += line) {
    const int8_t* row = rows.Row(y0 + ky);
    if (row == nullptr || x_end <= x_begin) {
      memset(out, d.image_zp, line);
      continue;
    }
    if (x_begin > 0) memset(out, d.image_zp, x_begin * ch);
    memcpy(out + x_begin * ch, row + (x0 + x_begin) * ch, (x_end - x_begin) * ch);
    if (x_end < k) memset(out + x_end * ch, d.image_zp, (k - x_end) * ch);
  }
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
  if (d->kernel() < opt[kPatch]) {
    MicroPrintf("%s: kernel %ld is smaller than patch %ld", kOp, static_cast<long>(d->kernel()),
                static_cast<long>(d->patch()));
    return kTfLiteError;
  }
  if (!ExpectCounts(node, kOp, 5 + d->has_cls())) return kTfLiteError;
  int32_t image[4], out[3];
  if (!ReadActivationShape(context, node, kOp, false, kImage, 4, image, &d->image_zp) ||
      !ReadActivationShape(context, node, kOp, true, 0, 3, out, &d->out_zp)) {
    return kTfLiteError;
  }
  d->height = image[1];
  d->width = image[2];
  d->channels = image[3];
  d->tokens = out[1];
  d->embed = out[2];
  const int64_t image_bytes = int64_t{image[1]} * image[2] * image[3];
  const int64_t window_bytes = int64_t{d->kernel()} * d->kernel() * d->channels;
  if (image[0] != 1 || out[0] != 1 || image_bytes > kInt32Max || window_bytes > kMaxSize ||
      d->height % d->patch() != 0 || d->width % d->patch() != 0) {
    MicroPrintf("%s: image [1, H, W, C] must have H and W multiples of patch %ld and "
                "K*K*C <= %ld", kOp, static_cast<long>(d->patch()), static_cast<long>(kMaxSize));
    return kTfLiteError;
  }
  const int64_t tokens = int64_t{d->height / d->patch()} * d->grid_w() + d->has_cls();
  if (d->tokens != tokens || tokens > kMaxSize || d->embed > kMaxSize ||
      tokens * d->embed > kInt32Max) {
    MicroPrintf("%s: output must be [1, %ld, E] with T, E <= %ld", kOp, static_cast<long>(tokens),
                static_cast<long>(kMaxSize));
    return kTfLiteError;
  }
  if (!ExpectLinear(context, node, kOp, "patch", kWeights, 0, d->window_bytes(), d->embed) ||
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
      GetLinear(context, node, kWeights, 0, 0, d.window_bytes(), d.embed).last;
  const int8_t* pos = InputInt8(context, node, kPos);
  int8_t* tokens = OutputInt8(context, node);
  TF_LITE_ENSURE_OK(context, CheckAliasing(kOp, image, d.height * d.width * d.channels, tokens,
                                           d.tokens * d.embed));

  const int32_t p = d.patch(), grid_h = d.height / p, grid_w = d.grid_w(), e_dim = d.embed;
  int8_t* scratch = static_cast<int8_t*>(context->GetScratchBuffer(context, d.scratch_index));
  const ScratchLayout<kNumScratch> layout = ScratchOf(d);
  int8_t* strip = scratch + layout.offset[kScratchStrip];
  int8_t* patch = scratch + layout.offset[kScratchPatch];
  // Strip order and halo keep every write on image bytes no later strip reads (SPEC 2.1).
  const bool top_down = d.top_down() != 0;
  const int32_t pad = d.pad();
  InputRows rows = {image, scratch + layout.offset[kScratchHalo], d.height, d.width * d.channels,
                    top_down ? -pad : d.height, d.halo_rows()};
  for (int32_t step = 0; step < grid_h; ++step) {
    const int32_t r = top_down ? step : grid_h - 1 - step;
    for (int32_t c = 0; c < grid_w; ++c) {
      GatherWindow(d, rows, r * p - pad, c * p - pad, patch);
      const int8_t* pos_row = pos + (r * grid_w + c) * e_dim;
      int8_t* token = strip + c * e_dim;
      ForEachAcc(linear, patch, 0, e_dim, [&](int32_t e, int32_t acc) {
        token[e] = static_cast<int8_t>(
            mcuf_sat8(int64_t{d.out_zp} + mcuf_mbqm(acc, linear.rq[2 * e], linear.rq[2 * e + 1]) +
                      mcuf_mbqm(pos_row[e] - opt[kPosZp], opt[kPosMult], opt[kPosShift])));
      });
    }
    rows.MoveHalo(top_down ? (r + 1) * p - pad : r * p);
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
