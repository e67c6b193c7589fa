// Standard normal draws from a counter-based generator, for EntropySGD's Langevin noise on the CPU
// (iclr17.functional.philox; arXiv:1611.01838 Algorithm 1, the noise term of its line 6).
//
// Value i of draw `draw` under key `seed` is a pure function of (seed, draw, i): Philox4x32-10 (Salmon, Moraes,
// Dror, Shaw, SC'11) of the counter (i / 4 low, i / 4 high, draw low, draw high) gives four 32-bit words, and the
// Box-Muller transform of the pairs (w0, w1), (w2, w3) gives values 4k .. 4k + 3. The transform uses only IEEE
// float32 +, -, *, / and sqrt (fixed polynomials for log, sin and cos; no fused multiply-add), so the values do not
// depend on the thread count or the CPU's vector width, and philox.py's torch version computes the same bits.
// Built on first use by iclr17.functional.compiled (torch.utils.cpp_extension).
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace {

constexpr uint64_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;   // Philox4x32 multipliers
constexpr uint64_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;  // key increments per round
constexpr uint64_t kLow = 0xFFFFFFFFu;                          // 32-bit words held in 64-bit lanes
constexpr int64_t kChunk = 256;                                 // counters per vectorised batch
constexpr int64_t kMinBlocksPerThread = 1 << 14;                // 65,536 values: less is not worth a thread


inline float as_float(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

inline uint32_t as_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

// sqrt(-2 log u) for u = (a + 1/2) 2^-24, a the top 24 bits of the word: log by exponent and mantissa,
// log m = 2 atanh(s) with s = (m - 1) / (m + 1), m in [sqrt(1/2), sqrt(2)).
inline float radius(uint32_t word) {
  const float u = (static_cast<float>(static_cast<int32_t>(word >> 8)) + 0.5f) * 0x1p-24f;
  const uint32_t bits = as_bits(u);
  float m = as_float((bits & 0x007FFFFFu) | 0x3F800000u);
  int32_t exponent = static_cast<int32_t>(bits >> 23) - 127;
  const uint32_t above = m > 0x1.6a09e6p+0f;  // then halve m: branch-free arithmetic so that the loop vectorises
  m = m * as_float(0x3F800000u - (above << 23));  // m * 0.5f or m * 1.0f
  exponent += static_cast<int32_t>(above);
  const float s = (m - 1.0f) / (m + 1.0f);
  const float s2 = s * s;
  float p = 0x1.c71c72p-4f;
  p = p * s2 + 0x1.24924ap-3f;
  p = p * s2 + 0x1.99999ap-3f;
  p = p * s2 + 0x1.555556p-2f;
  p = p * s2 + 1.0f;
  const float log_u = static_cast<float>(exponent) * 0x1.62e430p-1f + (2.0f * s) * p;
  return std::sqrt(-2.0f * log_u);
}

// (cos, sin) of 2 pi v for v = the word / 2^32: the top two bits pick the quadrant, the next 24 the angle
// phi in [0, pi/2) within it (Taylor polynomials to phi^13 and phi^14).
inline void angle(uint32_t word, float* cosine, float* sine) {
  const uint32_t quadrant = word >> 30;
  const float phi = static_cast<float>(static_cast<int32_t>((word >> 6) & 0x00FFFFFFu)) * 0x1p-24f *
                    0x1.921fb6p+0f;
  const float x2 = phi * phi;
  float sp = 0x1.612462p-33f;
  sp = sp * x2 - 0x1.ae6456p-26f;
  sp = sp * x2 + 0x1.71de3ap-19f;
  sp = sp * x2 - 0x1.a01a02p-13f;
  sp = sp * x2 + 0x1.111112p-7f;
  sp = sp * x2 - 0x1.555556p-3f;
  sp = sp * x2 + 1.0f;
  const float s = phi * sp;
  float cp = -0x1.93974ap-37f;
  cp = cp * x2 + 0x1.1eed8ep-29f;
  cp = cp * x2 - 0x1.27e4fcp-22f;
  cp = cp * x2 + 0x1.a01a02p-16f;
  cp = cp * x2 - 0x1.6c16c2p-10f;
  cp = cp * x2 + 0x1.555556p-5f;
  cp = cp * x2 - 0.5f;
  cp = cp * x2 + 1.0f;
  const float c = cp;
  const uint32_t swap = 0u - (quadrant & 1u);              // all ones in quadrants 1 and 3: (cos, sin) = (s, c)
  const uint32_t cos_sign = (((quadrant + 1u) >> 1) & 1u) << 31;  // negate cos in quadrants 1 and 2
  const uint32_t sin_sign = (quadrant >> 1) << 31;                 // negate sin in quadrants 2 and 3
  const uint32_t c_bits = as_bits(c), s_bits = as_bits(s);
  *cosine = as_float(((c_bits & ~swap) | (s_bits & swap)) ^ cos_sign);
  *sine = as_float(((s_bits & ~swap) | (c_bits & swap)) ^ sin_sign);
}

// Counters [first, first + count) of one draw into out[4 first ...], at most `numel` values in all. Compiled for
// AVX-512, AVX2 and the baseline, picked at load time: the same IEEE operations in every clone, so the same bits.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void fill_chunk(float* out, int64_t numel, int64_t first, int64_t count, uint32_t key0, uint32_t key1,
                uint32_t draw0, uint32_t draw1) {
  uint32_t w0[kChunk], w1[kChunk], w2[kChunk], w3[kChunk];
  for (int64_t j = 0; j < count; ++j) {  // the words in 64-bit lanes: no packing between rounds (2.7x faster)
    const uint64_t block = static_cast<uint64_t>(first + j);
    uint64_t c0 = block & kLow, c1 = block >> 32, c2 = draw0, c3 = draw1, k0 = key0, k1 = key1;
    for (int round = 0; round < 10; ++round) {
      const uint64_t p0 = kMul0 * (c0 & kLow), p1 = kMul1 * (c2 & kLow);
      const uint64_t n0 = ((p1 >> 32) ^ c1 ^ k0) & kLow, n2 = ((p0 >> 32) ^ c3 ^ k1) & kLow;
      c1 = p1 & kLow;
      c3 = p0 & kLow;
      c0 = n0;
      c2 = n2;
      k0 = (k0 + kWeyl0) & kLow;
      k1 = (k1 + kWeyl1) & kLow;
    }
    w0[j] = static_cast<uint32_t>(c0);
    w1[j] = static_cast<uint32_t>(c1);
    w2[j] = static_cast<uint32_t>(c2);
    w3[j] = static_cast<uint32_t>(c3);
  }
  float radius0[kChunk], radius1[kChunk], cos0[kChunk], sin0[kChunk], cos1[kChunk], sin1[kChunk];
  for (int64_t j = 0; j < count; ++j) radius0[j] = radius(w0[j]);  // unit-stride loops: they vectorise
  for (int64_t j = 0; j < count; ++j) radius1[j] = radius(w2[j]);
  for (int64_t j = 0; j < count; ++j) angle(w1[j], &cos0[j], &sin0[j]);
  for (int64_t j = 0; j < count; ++j) angle(w3[j], &cos1[j], &sin1[j]);
  float values[4 * kChunk];
  for (int64_t j = 0; j < count; ++j) {
    values[4 * j] = radius0[j] * cos0[j];
    values[4 * j + 1] = radius0[j] * sin0[j];
    values[4 * j + 2] = radius1[j] * cos1[j];
    values[4 * j + 3] = radius1[j] * sin1[j];
  }
  const int64_t start = 4 * first, stop = std::min<int64_t>(numel, 4 * (first + count));
  std::memcpy(out + start, values, sizeof(float) * static_cast<size_t>(stop - start));
}

}  // namespace

// Fills the contiguous float32 CPU tensor `out` with draw `draw` of key `seed` (both as 64-bit patterns), on
// torch's intra-op threads (the GIL released).
void philox_normal_(torch::Tensor out, int64_t seed, int64_t draw) {
  TORCH_CHECK(out.device().is_cpu() && out.scalar_type() == at::kFloat && out.is_contiguous(),
              "philox_normal_: out must be a contiguous float32 CPU tensor");
  const uint64_t key = static_cast<uint64_t>(seed), counter = static_cast<uint64_t>(draw);
  const uint32_t key0 = static_cast<uint32_t>(key), key1 = static_cast<uint32_t>(key >> 32);
  const uint32_t draw0 = static_cast<uint32_t>(counter), draw1 = static_cast<uint32_t>(counter >> 32);
  float* data = out.data_ptr<float>();
  const int64_t numel = out.numel(), blocks = (numel + 3) / 4;
  const auto fill = [=](int64_t begin, int64_t end) {
    for (int64_t first = begin; first < end; first += kChunk) {
      fill_chunk(data, numel, first, std::min<int64_t>(kChunk, end - first), key0, key1, draw0, draw1);
    }
  };
  // torch's own OpenMP threads (built with -fopenmp, the extension shares torch's libgomp): threads of our own
  // would fight its spinning workers for the cores. The values do not depend on how the counters are split.
  at::parallel_for(0, blocks, kMinBlocksPerThread, fill);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("philox_normal_", &philox_normal_, "Counter-based standard normal draws (Philox4x32-10, Box-Muller)",
        pybind11::call_guard<pybind11::gil_scoped_release>());
}
