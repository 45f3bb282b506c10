// MCUF_PATCH_EMBED (tflm_ops/SPEC.md 2.1): decomposed patch embedding (a
// K x K convolution of stride P, K >= P, zero-point padded, with an optional
// position embedding and ReLU), one strip of patches at a time, tokens written
// over the consumed image.
#include <string.h>

#if defined(__ARM_FEATURE_SIMD32)
#include <arm_acle.h>
#endif

#include "mcuf_blocks.h"
#include "mcuf_op_common.h"
#include "mcuf_ops.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace mcuformer {
namespace {

constexpr const char* kOp = "MCUF_PATCH_EMBED";
enum {
  kVersion, kPatch, kKernel, kHasCls, kPatchesPerPass, kHasPos, kRelu, kPosZp, kPosMult, kPosShift,
  kNumOptions
};
// Version 2 added `kernel`, 3 `patches_per_pass`, 4 `has_pos` and `relu` (SPEC 4).
const OptionSpec kSpecs[kNumOptions] = {
    {"version", 4, 4},     {"patch", 1, 4096},  {"kernel", 1, 4096},
    {"has_cls", 0, 1},     {"patches_per_pass", 1, 4},
    {"has_pos", 0, 1},     {"relu", 0, 1},
    {"pos_zp", -128, 127}, {"pos_mult", -kInt32Max, kInt32Max},
    {"pos_shift", -31, 30}};
// Inputs: image, the linear's weights, bias and rq; then pos (has_pos) and cls (has_cls).
enum { kImage, kWeights, kBias, kRq, kPos };
// Window columns gathered and packed per pass (tflm_ops/contract.py's PATCH_CHUNK).
constexpr int32_t kPatchChunk = 256;

struct OpData {
  Options<kNumOptions> options;
  // H and T are read from the tensors in Eval: with patches_per_pass, OpData stays at 72 bytes.
  int32_t width, channels, embed, out_zp, image_zp;
  int32_t scratch_index;

  int32_t patch() const { return options.value[kPatch]; }
  int32_t kernel() const { return options.value[kKernel]; }
  int32_t has_cls() const { return options.value[kHasCls]; }
  int32_t has_pos() const { return options.value[kHasPos]; }
  int32_t cls_index() const { return kPos + has_pos(); }
  int32_t patches_per_pass() const { return options.value[kPatchesPerPass]; }
  int32_t patch_bytes() const { return patch() * patch() * channels; }
  int32_t window_bytes() const { return kernel() * kernel() * channels; }
  int32_t grid_w() const { return width / patch(); }
  int32_t pad() const { return (kernel() - patch()) / 2; }
  int32_t top_down() const { return embed <= patch_bytes(); }
  int32_t halo_rows() const { return top_down() ? pad() : kernel() - patch() - pad(); }
  // Patches of a packed pass, 0 for one patch a pass (its whole window dotted unpacked).
  int32_t packed_patches() const { return patches_per_pass() == 1 ? 0 : patches_per_pass(); }
  int32_t chunk() const { return packed_patches() == 0 ? window_bytes() : Min(window_bytes(), kPatchChunk); }
};
static_assert(sizeof(OpData) == kPatchEmbedOpDataBytes, "update SPEC.md's persistent bytes");

// Scratch segments (tflm_ops/contract.py), in order: the strip's tokens, the
// halo, int32 accumulators of the patches of a packed pass, and one chunk of
// window columns of those patches, gathered (int8) and packed (int16); one
// patch a pass needs only its whole window (int8).
enum { kScratchStrip, kScratchHalo, kScratchAcc, kScratchChunk, kScratchPacked, kNumScratch };

ScratchLayout<kNumScratch> ScratchOf(const OpData& d) {
  int64_t size[kNumScratch];
  size[kScratchStrip] = int64_t{d.grid_w()} * d.embed;
  size[kScratchHalo] = int64_t{d.halo_rows()} * d.grid_w() * d.patch() * d.channels;
  size[kScratchAcc] = int64_t{4} * d.packed_patches() * d.embed;
  size[kScratchChunk] = d.chunk();
  size[kScratchPacked] = PackedBytes(d.chunk(), d.packed_patches());
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

// Gathers columns [first, first + count) of the K x K x C window whose
// top-left input pixel is (y0, x0), in (ky, kx, ch) order, padding with the
// image zero point.
void GatherColumns(const OpData& d, const InputRows& rows, int32_t y0, int32_t x0, int32_t first,
                   int32_t count, int8_t* out) {
  const int32_t ch = d.channels, line = d.kernel() * ch;
  // Bytes [lo, hi) of a window line lie inside the image.
  const int32_t lo = (x0 < 0 ? -x0 : 0) * ch;
  const int32_t hi = (x0 + d.kernel() > d.width ? d.width - x0 : d.kernel()) * ch;
  for (int32_t j = first, end = first + count; j < end;) {
    const int32_t ky = j / line, off = j - ky * line;
    const int32_t len = line - off < end - j ? line - off : end - j;
    const int8_t* row = rows.Row(y0 + ky);
    const int32_t a = row == nullptr ? off + len : Min(Max(lo, off), off + len);
    const int32_t b = Max(a, Min(hi, off + len));
    if (a > off) memset(out, d.image_zp, a - off);
    if (b > a) memcpy(out + (a - off), row + (x0 * ch + a), b - a);
    if (off + len > b) memset(out + (b - off), d.image_zp, off + len - b);
    out += len;
    j += len;
  }
}

// PackToken, four columns per step.
void PackColumns(const int8_t* x, int32_t n, int32_t nb, int32_t t, int16_t* packed) {
  int16_t* out = packed + PackedIndex(nb, t, 0);
  int32_t c = 0;
  for (; c + 4 <= n; c += 4, x += 4, out += 4 * nb) {
#if defined(__ARM_FEATURE_SIMD32)
    uint32_t x4;
    memcpy(&x4, x, sizeof(x4));
    const int32_t halves[2] = {__sxtb16(x4), __sxtb16((x4 >> 8) | (x4 << 24))};
    memcpy(out, halves, sizeof(halves));
#else
#pragma GCC unroll 4
    for (int32_t k = 0; k < 4; ++k) out[PackedIndex(1, 0, k)] = x[k];
#endif
  }
  for (; c < n; ++c) packed[PackedIndex(nb, t, c)] = *x++;
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
  if (d->patches_per_pass() != 1 && d->patches_per_pass() != kTokenBatch) {
    MicroPrintf("%s: patches_per_pass %ld is not 1 or %ld", kOp,
                static_cast<long>(d->patches_per_pass()), static_cast<long>(kTokenBatch));
    return kTfLiteError;
  }
  if (d->kernel() < opt[kPatch]) {
    MicroPrintf("%s: kernel %ld is smaller than patch %ld", kOp, static_cast<long>(d->kernel()),
                static_cast<long>(d->patch()));
    return kTfLiteError;
  }
  if (!ExpectCounts(node, kOp, kPos + d->has_pos() + d->has_cls())) return kTfLiteError;
  int32_t image[4], out[4];
  int out_rank = 0;
  // Without a class token the output may be the [1, Gh, Gw, E] feature map a next stem layer reads.
  if (!ReadActivationShape(context, node, kOp, false, kImage, 4, image, &d->image_zp) ||
      !ReadActivationShape(context, node, kOp, true, 0, 3, d->has_cls() ? 3 : 4, out, &out_rank,
                           &d->out_zp)) {
    return kTfLiteError;
  }
  const int32_t height = image[1];
  d->width = image[2];
  d->channels = image[3];
  d->embed = out[out_rank - 1];
  const int64_t image_bytes = int64_t{image[1]} * image[2] * image[3];
  const int64_t window_bytes = int64_t{d->kernel()} * d->kernel() * d->channels;
  if (image[0] != 1 || out[0] != 1 || image_bytes > kInt32Max || window_bytes > kMaxSize ||
      height % d->patch() != 0 || d->width % d->patch() != 0) {
    MicroPrintf("%s: image [1, H, W, C] must have H and W multiples of patch %ld and "
                "K*K*C <= %ld", kOp, static_cast<long>(d->patch()), static_cast<long>(kMaxSize));
    return kTfLiteError;
  }
  const int64_t tokens = int64_t{height / d->patch()} * d->grid_w() + d->has_cls();
  const bool grid_ok = out_rank == 3 ? out[1] == tokens
                                     : out[1] == height / d->patch() && out[2] == d->grid_w();
  if (!grid_ok || tokens > kMaxSize || d->embed > kMaxSize || tokens * d->embed > kInt32Max) {
    MicroPrintf("%s: output must be [1, %ld, E] (or [1, Gh, Gw, E] without a class token) with "
                "T, E <= %ld", kOp, static_cast<long>(tokens), static_cast<long>(kMaxSize));
    return kTfLiteError;
  }
  if (!ExpectLinear(context, node, kOp, "patch", kWeights, 0, d->window_bytes(), d->embed) ||
      (d->has_pos() && !ExpectTensor(context, node, kOp, false, kPos, "pos", kTfLiteInt8,
                                     {static_cast<int32_t>(tokens), d->embed})) ||
      (d->has_cls() &&
       !ExpectTensor(context, node, kOp, false, d->cls_index(), "cls", kTfLiteInt8, {d->embed}))) {
    return kTfLiteError;
  }
  return RequestScratch(context, kOp, ScratchOf(*d).bytes, &d->scratch_index);
}

// Where a pass reads and writes: the scratch segments and the linear.
struct Buffers {
  const LinearFactor& linear;
  int32_t* acc;
  int8_t* chunk;
  int16_t* packed;
};

// acc[e * nb + t] += W[e, first:first + n] . x_t for e < E, t < nb, from the
// packed columns x of nb patches (kRowChunk rows per DotRowsPacked call).
void AddChunk(const OpData& d, const Buffers& b, int32_t first, int32_t n, int32_t nb) {
  int32_t dots[kRowChunk * kTokenBatch];
  const int32_t window = d.window_bytes();
  for (int32_t e0 = 0; e0 < d.embed; e0 += kRowChunk) {
    const int32_t rows = Min(kRowChunk, d.embed - e0);
    DotRowsPacked(b.linear.weights + int64_t{e0} * window + first, window, n, nullptr, b.packed, nb,
                  rows, dots);
    int32_t* acc = b.acc + e0 * nb;
    for (int32_t i = 0; i < rows * nb; ++i) acc[i] = WrapAdd(acc[i], dots[i]);
  }
}

// acc[e * nb + t] = bias[e] + W[e] . window(patch (r, c0 + t)) for t < nb, one
// chunk of window columns of the nb patches at a time: each weight word is
// split once for all of them.
void AccumulatePatches(const OpData& d, const InputRows& rows, const Buffers& b, int32_t r,
                       int32_t c0, int32_t nb) {
  const int32_t p = d.patch(), pad = d.pad(), window = d.window_bytes();
  for (int32_t first = 0; first < window; first += d.chunk()) {
    const int32_t n = Min(d.chunk(), window - first);
    for (int32_t t = 0; t < nb; ++t) {
      GatherColumns(d, rows, r * p - pad, (c0 + t) * p - pad, first, n, b.chunk);
      PackColumns(b.chunk, n, nb, t, b.packed);
    }
    if (first == 0) {
      DotRowsPacked(b.linear.weights, window, n, b.linear.bias, b.packed, nb, d.embed, b.acc);
    } else {
      AddChunk(d, b, first, n, nb);
    }
  }
}

// A token value (SPEC 2.1) from its requantized accumulator and its position
// embedding (none without has_pos), then the ReLU (relu).
struct TokenOut {
  RequantRow pos_rq;
  int32_t pos_zp, out_zp, low;

  explicit TokenOut(const OpData& d)
      : pos_rq(d.options.value + kPosMult),
        pos_zp(d.options.value[kPosZp]),
        out_zp(d.out_zp),
        low(d.options.value[kRelu] ? d.out_zp : -128) {}

  int8_t S8(int32_t acc_rq, const int8_t* pos) const {
    // |out_zp| <= 128: saturating the sum to 10 bits first changes nothing.
    const int32_t sum = pos == nullptr ? acc_rq : SatAdd32(acc_rq, pos_rq.Mbqm(*pos - pos_zp));
    return static_cast<int8_t>(Max(SatBits<8>(SatBits<10>(sum) + out_zp), low));
  }
};

// out[t * E + e] = token e of patch t < nb from acc[e * nb + t] (SPEC 2.1),
// pos_rows[t * E + e] its position embedding (nullptr: none); acc is overwritten.
void WriteTokens(const OpData& d, const Buffers& b, int32_t nb, const int8_t* pos_rows,
                 int8_t* out) {
  const int32_t e_dim = d.embed;
  for (int32_t e = 0; e < e_dim; ++e) {
    const RequantRow rq(b.linear.rq + 2 * e);
    for (int32_t t = 0; t < nb; ++t) b.acc[e * nb + t] = rq.Mbqm(b.acc[e * nb + t]);
  }
  const TokenOut token(d);
  for (int32_t t = 0; t < nb; ++t) {
    for (int32_t e = 0; e < e_dim; ++e) {
      out[t * e_dim + e] =
          token.S8(b.acc[e * nb + t], pos_rows == nullptr ? nullptr : pos_rows + t * e_dim + e);
    }
  }
}

// out[e] = token e of patch (r, c), its whole window gathered into b.chunk and
// each row's dot product requantized at once (one patch a pass: no accumulators).
void WriteToken(const OpData& d, const InputRows& rows, const Buffers& b, int32_t r, int32_t c,
                const int8_t* pos_row, int8_t* out) {
  GatherColumns(d, rows, r * d.patch() - d.pad(), c * d.patch() - d.pad(), 0, d.window_bytes(),
                b.chunk);
  const TokenOut token(d);
  ForEachAcc(b.linear, b.chunk, 0, d.embed, [&](int32_t e, int32_t acc) {
    out[e] = token.S8(RequantRow(b.linear.rq + 2 * e).Mbqm(acc),
                      pos_row == nullptr ? nullptr : pos_row + e);
  });
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const OpData& d = *static_cast<const OpData*>(node->user_data);
  const int8_t* image = InputInt8(context, node, kImage);
  const LinearFactor linear =
      GetLinear(context, node, kWeights, 0, 0, d.window_bytes(), d.embed).last;
  const int8_t* pos = d.has_pos() ? InputInt8(context, node, kPos) : nullptr;
  int8_t* tokens = OutputInt8(context, node);
  const int32_t height = tflite::micro::GetEvalInput(context, node, kImage)->dims->data[1];
  const int32_t p = d.patch(), grid_h = height / p, grid_w = d.grid_w(), e_dim = d.embed;
  const int32_t n_tokens = grid_h * grid_w + d.has_cls();
  TF_LITE_ENSURE_OK(context, CheckAliasing(kOp, image, height * d.width * d.channels, tokens,
                                           n_tokens * e_dim));

  int8_t* scratch = static_cast<int8_t*>(context->GetScratchBuffer(context, d.scratch_index));
  const ScratchLayout<kNumScratch> layout = ScratchOf(d);
  int8_t* strip = scratch + layout.offset[kScratchStrip];
  const Buffers buffers = {linear, reinterpret_cast<int32_t*>(scratch + layout.offset[kScratchAcc]),
                           scratch + layout.offset[kScratchChunk],
                           reinterpret_cast<int16_t*>(scratch + layout.offset[kScratchPacked])};
  // Strip order and halo keep every write on image bytes no later strip reads (SPEC 2.1).
  const bool top_down = d.top_down() != 0;
  const int32_t pad = d.pad();
  InputRows rows = {image, scratch + layout.offset[kScratchHalo], height, d.width * d.channels,
                    top_down ? -pad : height, d.halo_rows()};
  for (int32_t step = 0; step < grid_h; ++step) {
    const int32_t r = top_down ? step : grid_h - 1 - step;
    for (int32_t c0 = 0; c0 < grid_w; c0 += d.patches_per_pass()) {
      const int8_t* pos_rows = pos == nullptr ? nullptr : pos + (r * grid_w + c0) * e_dim;
      if (d.packed_patches() == 0) {
        WriteToken(d, rows, buffers, r, c0, pos_rows, strip + c0 * e_dim);
        continue;
      }
      const int32_t nb = Min(d.packed_patches(), grid_w - c0);
      AccumulatePatches(d, rows, buffers, r, c0, nb);
      WriteTokens(d, buffers, nb, pos_rows, strip + c0 * e_dim);
    }
    rows.MoveHalo(top_down ? (r + 1) * p - pad : r * p);
    memcpy(tokens + r * grid_w * e_dim, strip, grid_w * e_dim);
  }
  if (d.has_cls()) {
    memcpy(tokens + (n_tokens - 1) * e_dim, InputInt8(context, node, d.cls_index()), e_dim);
  }
  return kTfLiteOk;
}

}  // namespace

const TFLMRegistration* Register_MCUF_PATCH_EMBED() {
  return StaticRegistration<Init, Prepare, Eval>();
}

}  // namespace mcuformer
