#pragma once
// Asymmetric (min / zero-point + scale) integer quantization in groups, as KIVI does it
// (jy-yuan/KIVI quant/new_pack.py triton_quantize_and_pack_along_last_dim): per group,
// scale = (max - min) / (2^bits - 1), q = clamp(round_half_even((x - min) / scale), 0, 2^bits - 1),
// x' = q * scale + min, so |x - x'| <= scale / 2. Computed in float32; a constant group
// (scale 0) dequantizes exactly. Scale and min are kept in float32 here; the byte accounting
// charges them as float16 (kQuantScaleZeroBytes), as KIVI stores them.
#include <cstdint>

#include "traces/trace.h"

namespace kvsim {

inline constexpr int kQuantScaleZeroBytes = 4;  // one float16 scale + one float16 zero-point per group

// Dequantized copy of `x` [tokens, channels] quantized per channel: groups of `group` consecutive
// tokens of one channel (KIVI keys). A last partial group is quantized on its own.
HeadMatrix fake_quantize_per_channel(const HeadMatrix& x, int bits, int group);

// Dequantized copy of `x` quantized per token: groups of `group` consecutive channels of one token
// (KIVI values). A last partial group is quantized on its own.
HeadMatrix fake_quantize_per_token(const HeadMatrix& x, int bits, int group);

// The same, overwriting `x` (no allocation: callers that reuse a buffer avoid page-faulting a fresh
// one per head, which on some VMs costs more than the quantization itself).
void fake_quantize_per_channel_in_place(HeadMatrix& x, int bits, int group);
void fake_quantize_per_token_in_place(HeadMatrix& x, int bits, int group);

// Bytes of `elements` quantized elements in groups of `group` (REQUIRES group divides elements):
// elements * bits / 8 + elements / group * kQuantScaleZeroBytes.
double quantized_bytes(std::int64_t elements, int bits, int group);

}  // namespace kvsim
