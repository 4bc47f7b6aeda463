// One critic of a two-hidden-layer MLP, evaluated at many actions per state together with the
// gradient of its output with respect to the action, fused in one pass over row blocks that
// stay in the core's cache. This is the largest part of the ALGD actor update: the energy and
// its action gradient at the chain's final actions and at the Monte-Carlo points, for every
// reward and cost critic (see algd/kernels.py, which also holds the reference formulation this
// kernel must match).
//
//   z1 = feats[r mod S] + a_r Wa      h1 = f(z1)
//   z2 = h1 W2 + b2                   h2 = f(z2)
//   q_r = h2 w3 + b3
//   dq/da_r = ((w3 * f'(z2)) W2^T * f'(z1)) Wa^T
//
// The twin reward critics enter the energy through their minimum, so one call computes both
// members' values and the minimum's action gradient: at each action only the smaller member's
// backward pass runs (the larger one's contributes exactly zero).
//
// f is ReLU (act = 0) or SiLU (act = 1). Rows are processed in blocks of kBlock; each block's
// intermediates (kBlock x width) live in per-thread buffers, and W2 is packed once per call into
// 32-column panels for the transposed product. Products use an
// AVX-512 register-blocked micro-kernel (12 rows x 32 columns). Accumulation order is fixed, so
// results are deterministic.

#include <immintrin.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int kNR = 32;     // columns per panel (two zmm registers)
constexpr int kMR = 12;     // rows per micro-tile (24 accumulators)
constexpr int kBlock = 48;  // rows per block

// exp(x) for x in [-87, 87]: 2^n * p(f), n = round(x log2 e), |f| <= 1/2, p the degree-7
// Taylor polynomial of 2^f (relative error below 2e-8 before rounding).
inline __m512 exp_ps(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(87.0f));
  const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.4426950408889634f));
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);
  // c_k = ln(2)^k / k!
  __m512 p = _mm512_set1_ps(1.5252733804059841e-05f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.5403530393381606e-04f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-02f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// h = f(z) in place of z and, when d is not null, d = f'(z). n is a multiple of 16.
inline void activate(float* z, float* d, int n, int act) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512 one = _mm512_set1_ps(1.0f);
  if (act == 0) {
    for (int i = 0; i < n; i += 16) {
      const __m512 v = _mm512_loadu_ps(z + i);
      const __mmask16 pos = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
      // max(0, v) with v second, so that a NaN passes through as it does in XLA.
      _mm512_storeu_ps(z + i, _mm512_max_ps(zero, v));
      if (d) _mm512_storeu_ps(d + i, _mm512_maskz_mov_ps(pos, one));
    }
    return;
  }
  for (int i = 0; i < n; i += 16) {
    const __m512 v = _mm512_loadu_ps(z + i);
    const __m512 e = exp_ps(_mm512_sub_ps(zero, v));
    const __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, e));  // sigmoid
    _mm512_storeu_ps(z + i, _mm512_mul_ps(v, s));
    // d/dz z s(z) = s (1 + z (1 - s))
    if (d) _mm512_storeu_ps(d + i, _mm512_mul_ps(s, _mm512_fmadd_ps(v, _mm512_sub_ps(one, s), one)));
  }
}

// C[rows x 32] = A[rows x K] * B[K x 32] (+ bias[32] when given); A's element (i, p) at
// a[i * a_rs + p * a_ks], B's row p at b + p * ldb. 24 accumulators stay in registers.
template <int MR>
inline void tile(const float* a, long a_rs, long a_ks, const float* b, long ldb, int k, float* c,
                 long ldc, const float* bias) {
  __m512 c0[MR], c1[MR];
  const __m512 i0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
  const __m512 i1 = bias ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();
  for (int i = 0; i < MR; ++i) {
    c0[i] = i0;
    c1[i] = i1;
  }
  for (int p = 0; p < k; ++p) {
    const __m512 b0 = _mm512_loadu_ps(b + p * ldb);
    const __m512 b1 = _mm512_loadu_ps(b + p * ldb + 16);
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(a[i * a_rs + p * a_ks]);
      c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    _mm512_storeu_ps(c + i * ldc, c0[i]);
    _mm512_storeu_ps(c + i * ldc + 16, c1[i]);
  }
}

template <int MR>
inline void tile_rows(int rows, const float* a, long a_rs, long a_ks, const float* b, long ldb,
                      int k, float* c, long ldc, const float* bias) {
  if constexpr (MR == 0) {
    (void)rows, (void)a, (void)a_rs, (void)a_ks, (void)b, (void)ldb, (void)k, (void)c, (void)ldc,
        (void)bias;
  } else if (rows == MR) {
    tile<MR>(a, a_rs, a_ks, b, ldb, k, c, ldc, bias);
  } else {
    tile_rows<MR - 1>(rows, a, a_rs, a_ks, b, ldb, k, c, ldc, bias);
  }
}

// C[rows x n] (row stride ldc) = A * B for A as in tile and B given as n / 32 panels of K x 32:
// panel j starts at b + j * panel_stride and its rows are ldb apart. A row-major K x n matrix is
// panel_stride 32, ldb n; packed panels (pack_transposed) are panel_stride 32 K, ldb 32.
void product(int rows, const float* a, long a_rs, long a_ks, int k, const float* b, long ldb,
             long panel_stride, int n, float* c, long ldc, const float* bias) {
  for (int j = 0; j < n / kNR; ++j) {
    const float* bj = b + j * panel_stride;
    const float* bias_j = bias ? bias + j * kNR : nullptr;
    int r = 0;
    for (; r + kMR <= rows; r += kMR) {
      tile<kMR>(a + r * a_rs, a_rs, a_ks, bj, ldb, k, c + r * ldc + j * kNR, ldc, bias_j);
    }
    if (r < rows) {
      tile_rows<kMR - 1>(rows - r, a + r * a_rs, a_rs, a_ks, bj, ldb, k, c + r * ldc + j * kNR,
                         ldc, bias_j);
    }
  }
}

// C[rows x n] = A[rows x k] (row-major) * B[k x n] (row-major).
inline void product_rm(int rows, const float* a, int k, const float* b, int n, float* c,
                       const float* bias) {
  product(rows, a, k, 1, k, b, n, kNR, n, c, n, bias);
}

// W (rows x cols, row-major) transposed into rows / 32 panels of cols x 32, for products with
// W^T (panel_stride 32 cols, ldb 32).
void pack_transposed(const float* w, int rows, int cols, float* out) {
  for (int j = 0; j < rows / kNR; ++j) {
    float* panel = out + static_cast<size_t>(j) * cols * kNR;
    for (int k = 0; k < cols; ++k) {
      for (int c = 0; c < kNR; ++c) {
        panel[k * kNR + c] = w[static_cast<size_t>(j * kNR + c) * cols + k];
      }
    }
  }
}

// z[0:n] += sum_i x[i] wa[i, 0:n], the first layer's action part (wa is a x n, row-major).
inline void add_action_part(float* z, const float* x, const float* wa, int a, int n) {
  for (int h = 0; h < n; h += 16) {
    __m512 v = _mm512_loadu_ps(z + h);
    for (int i = 0; i < a; ++i) {
      v = _mm512_fmadd_ps(_mm512_set1_ps(x[i]), _mm512_loadu_ps(wa + i * n + h), v);
    }
    _mm512_storeu_ps(z + h, v);
  }
}

// sum_c h[c] w[c] over n (a multiple of 16) entries.
inline float row_dot(const float* h, const float* w, int n) {
  __m512 acc = _mm512_setzero_ps();
  for (int c = 0; c < n; c += 16) {
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(h + c), _mm512_loadu_ps(w + c), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

struct Scratch {
  std::vector<float> storage;
  float* get(size_t n) {
    if (storage.size() < n + 16) storage.resize(n + 16);
    auto addr = reinterpret_cast<uintptr_t>(storage.data());
    return reinterpret_cast<float*>((addr + 63) & ~static_cast<uintptr_t>(63));
  }
};

// Runs drain(job) on the calling thread and on up to (XLA's threads - 1) tasks of XLA's own
// pool, at most one per task beyond the first, so a call uses the cores XLA was given and no
// more. The job is shared: a helper that starts after the work is done finds nothing left and
// touches nothing but the job. The caller then waits for its own completion counter.
template <typename JobT, typename Drain>
void share_with_pool(ffi::ThreadPool& pool, const std::shared_ptr<JobT>& job, int tasks,
                     Drain drain) {
  const int64_t threads = pool.num_threads();
  const int64_t helpers = threads - 1 < tasks - 1 ? threads - 1 : tasks - 1;
  for (int64_t i = 0; i < helpers; ++i) {
    pool.Schedule([job, drain]() { drain(*job); });
  }
  drain(*job);
}

inline void wait_for(const std::atomic<int>& done, int total) {
  while (done.load(std::memory_order_acquire) < total) _mm_pause();
}

// One critic member's inputs to a call.
struct Critic {
  const float *F, *WA, *W2, *B2, *W3, *bwd;  // bwd: W2 packed by pack_transposed
  float bias3;
};

// Everything one call needs; shared with the helper task. Modes: the values only; the values
// and each row's action gradient; or, for two members, both values and the action gradient of
// their minimum (each row's gradient comes from the smaller member only, so the other member's
// backward pass is skipped).
enum class Mode { kValue, kValueGrad, kMinGrad };

struct Job {
  int S, H0, P, A, H1, act, blocks;
  Mode mode;
  Critic net[2];
  const float* X;
  float *Q, *G;  // Q: P values per member, member-major
  std::atomic<int> next{0};
  std::atomic<int> done{0};
};

struct BlockBuffers {
  float *h1, *d1, *z2, *d2;
};

// Layers 1 and 2 and the output for rows [r0, r0 + rows) of one member: h1 = f(z1), d1 =
// f'(z1), z2 -> f(z2), d2 = w3 * f'(z2) (the output's gradient with respect to z2) when grad.
void forward_rows(const Job& job, const Critic& c, int r0, int rows, const BlockBuffers& b,
                  bool grad, float* q) {
  const int S = job.S, H0 = job.H0, A = job.A, H1 = job.H1, act = job.act;
  for (int r = 0; r < rows; ++r) {
    float* z = b.h1 + static_cast<size_t>(r) * H0;
    std::memcpy(z, c.F + static_cast<size_t>((r0 + r) % S) * H0, H0 * sizeof(float));
    add_action_part(z, job.X + static_cast<size_t>(r0 + r) * A, c.WA, A, H0);
  }
  activate(b.h1, grad ? b.d1 : nullptr, rows * H0, act);
  product_rm(rows, b.h1, H0, c.W2, H1, b.z2, c.B2);
  activate(b.z2, grad ? b.d2 : nullptr, rows * H1, act);
  for (int r = 0; r < rows; ++r) {
    q[r] = row_dot(b.z2 + static_cast<size_t>(r) * H1, c.W3, H1) + c.bias3;
  }
  if (!grad) return;
  for (int i = 0; i < rows * H1; i += 16) {
    const __m512 w = _mm512_loadu_ps(c.W3 + i % H1);
    _mm512_storeu_ps(b.d2 + i, _mm512_mul_ps(w, _mm512_loadu_ps(b.d2 + i)));
  }
}

// Back through layer 2 and layer 1 to the action for n rows: gz2 (n x H1) is the gradient with
// respect to z2, row k's f'(z1) is d1's row idx[k] (row k when idx is null). Writes each row's
// action gradient to g[k * A].
void backward_rows(const Job& job, const Critic& c, int n, const float* gz2, const float* d1,
                   const int* idx, float* g1, float* g) {
  const int H0 = job.H0, A = job.A, H1 = job.H1;
  product(n, gz2, H1, 1, H1, c.bwd, kNR, static_cast<long>(H1) * kNR, H0, g1, H0, nullptr);
  for (int k = 0; k < n; ++k) {
    float* row = g1 + static_cast<size_t>(k) * H0;
    const float* d = d1 + static_cast<size_t>(idx ? idx[k] : k) * H0;
    for (int h = 0; h < H0; h += 16) {
      _mm512_storeu_ps(row + h, _mm512_mul_ps(_mm512_loadu_ps(row + h), _mm512_loadu_ps(d + h)));
    }
    for (int i = 0; i < A; ++i) g[static_cast<size_t>(k) * A + i] = row_dot(row, c.WA + i * H0, H0);
  }
}

void run_block(const Job& job, int r0) {
  const int H0 = job.H0, A = job.A, H1 = job.H1, P = job.P;
  const int rows = P - r0 < kBlock ? P - r0 : kBlock;
  const bool grad = job.mode != Mode::kValue;
  const int members = job.mode == Mode::kMinGrad ? 2 : 1;
  thread_local Scratch s_buf[2][4], s_g1, s_gz, s_g, s_idx;
  BlockBuffers b[2];
  for (int m = 0; m < members; ++m) {
    b[m] = {s_buf[m][0].get(static_cast<size_t>(kBlock) * H0),
            s_buf[m][1].get(static_cast<size_t>(kBlock) * H0),
            s_buf[m][2].get(static_cast<size_t>(kBlock) * H1),
            s_buf[m][3].get(static_cast<size_t>(kBlock) * H1)};
    forward_rows(job, job.net[m], r0, rows, b[m], grad, job.Q + static_cast<size_t>(m) * P + r0);
  }
  if (!grad) return;
  float* g1 = s_g1.get(static_cast<size_t>(kBlock) * H0);
  float* out = job.G + static_cast<size_t>(r0) * A;
  if (job.mode == Mode::kValueGrad) {
    backward_rows(job, job.net[0], rows, b[0].d2, b[0].d1, nullptr, g1, out);
    return;
  }
  // The minimum's gradient: from the smaller member; half from each on a tie (as reverse mode
  // differentiates min); not a number where either value is not a number.
  const float* q0 = job.Q + r0;
  const float* q1 = job.Q + P + r0;
  float* gz = s_gz.get(static_cast<size_t>(kBlock) * H1);
  float* g = s_g.get(static_cast<size_t>(kBlock) * A);
  int* idx = reinterpret_cast<int*>(s_idx.get(kBlock));
  for (int r = 0; r < rows; ++r) {
    const bool bad = q0[r] != q0[r] || q1[r] != q1[r];
    for (int i = 0; i < A; ++i) out[static_cast<size_t>(r) * A + i] = bad ? q0[r] + q1[r] : 0.0f;
  }
  for (int m = 0; m < 2; ++m) {
    int n = 0;
    for (int r = 0; r < rows; ++r) {
      const float mine = m == 0 ? q0[r] : q1[r], other = m == 0 ? q1[r] : q0[r];
      if (!(mine <= other)) continue;  // larger, or not a number
      const __m512 w = _mm512_set1_ps(mine == other ? 0.5f : 1.0f);
      const float* d2 = b[m].d2 + static_cast<size_t>(r) * H1;
      float* dst = gz + static_cast<size_t>(n) * H1;
      for (int h = 0; h < H1; h += 16) {
        _mm512_storeu_ps(dst + h, _mm512_mul_ps(w, _mm512_loadu_ps(d2 + h)));
      }
      idx[n++] = r;
    }
    if (n == 0) continue;
    backward_rows(job, job.net[m], n, gz, b[m].d1, idx, g1, g);
    for (int k = 0; k < n; ++k) {
      for (int i = 0; i < A; ++i) out[static_cast<size_t>(idx[k]) * A + i] += g[k * A + i];
    }
  }
}

// Takes blocks until none is left; returns when this thread has no more to do.
void drain(Job& job) {
  for (;;) {
    const int b = job.next.fetch_add(1, std::memory_order_relaxed);
    if (b >= job.blocks) return;
    run_block(job, b * kBlock);
    job.done.fetch_add(1, std::memory_order_release);
  }
}

struct MemberArgs {
  ffi::Buffer<ffi::F32>*feats, *wa, *w2, *b2, *w3, *b3;
};

ffi::Error Run(ffi::ThreadPool& pool, Mode mode, const MemberArgs* members,
               ffi::Buffer<ffi::F32>& actions, int32_t act, float* q_out, float* g_out) {
  const int count = mode == Mode::kMinGrad ? 2 : 1;
  const auto fd = members[0].feats->dimensions();
  const auto ad = actions.dimensions();
  const auto wd = members[0].w2->dimensions();
  if (fd.size() != 2 || ad.size() != 2 || wd.size() != 2) {
    return ffi::Error::InvalidArgument("critic kernel: feats, actions and w2 must be matrices");
  }
  auto job = std::make_shared<Job>();
  job->S = static_cast<int>(fd[0]);
  job->H0 = static_cast<int>(fd[1]);
  job->P = static_cast<int>(ad[0]);
  job->A = static_cast<int>(ad[1]);
  job->H1 = static_cast<int>(wd[1]);
  job->act = act;
  job->mode = mode;
  const int S = job->S, H0 = job->H0, A = job->A, H1 = job->H1;
  if (S <= 0 || job->P % S != 0 || wd[0] != H0 || H0 % kNR != 0 || H1 % kNR != 0 ||
      (act != 0 && act != 1)) {
    return ffi::Error::InvalidArgument("critic kernel: unsupported shapes or activation");
  }
  thread_local Scratch s_bwd[2];
  for (int m = 0; m < count; ++m) {
    const MemberArgs& in = members[m];
    const auto f = in.feats->dimensions();
    const auto w = in.w2->dimensions();
    if (f.size() != 2 || f[0] != S || f[1] != H0 || w.size() != 2 || w[0] != H0 || w[1] != H1 ||
        in.wa->element_count() != static_cast<size_t>(A) * H0 ||
        in.b2->element_count() != static_cast<size_t>(H1) ||
        in.w3->element_count() != static_cast<size_t>(H1) || in.b3->element_count() != 1) {
      return ffi::Error::InvalidArgument("critic kernel: unsupported shapes or activation");
    }
    float* bwd = nullptr;
    if (mode != Mode::kValue) {
      bwd = s_bwd[m].get(static_cast<size_t>(H0) * H1);
      pack_transposed(in.w2->typed_data(), H0, H1, bwd);
    }
    job->net[m] = {in.feats->typed_data(), in.wa->typed_data(), in.w2->typed_data(),
                   in.b2->typed_data(), in.w3->typed_data(), bwd, in.b3->typed_data()[0]};
  }
  job->X = actions.typed_data();
  job->Q = q_out;
  job->G = g_out;
  job->blocks = (job->P + kBlock - 1) / kBlock;
  share_with_pool(pool, job, job->blocks, drain);
  wait_for(job->done, job->blocks);
  return ffi::Error::Success();
}

ffi::Error CriticValueGradImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> feats,
                               ffi::Buffer<ffi::F32> actions, ffi::Buffer<ffi::F32> wa,
                               ffi::Buffer<ffi::F32> w2, ffi::Buffer<ffi::F32> b2,
                               ffi::Buffer<ffi::F32> w3, ffi::Buffer<ffi::F32> b3, int32_t act,
                               ffi::ResultBuffer<ffi::F32> q_out,
                               ffi::ResultBuffer<ffi::F32> g_out) {
  const MemberArgs m{&feats, &wa, &w2, &b2, &w3, &b3};
  return Run(pool, Mode::kValueGrad, &m, actions, act, q_out->typed_data(), g_out->typed_data());
}

ffi::Error CriticValueImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> feats,
                           ffi::Buffer<ffi::F32> actions, ffi::Buffer<ffi::F32> wa,
                           ffi::Buffer<ffi::F32> w2, ffi::Buffer<ffi::F32> b2,
                           ffi::Buffer<ffi::F32> w3, ffi::Buffer<ffi::F32> b3, int32_t act,
                           ffi::ResultBuffer<ffi::F32> q_out) {
  const MemberArgs m{&feats, &wa, &w2, &b2, &w3, &b3};
  return Run(pool, Mode::kValue, &m, actions, act, q_out->typed_data(), nullptr);
}

ffi::Error CriticMinGradImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> feats0,
                             ffi::Buffer<ffi::F32> feats1, ffi::Buffer<ffi::F32> actions,
                             ffi::Buffer<ffi::F32> wa0, ffi::Buffer<ffi::F32> w20,
                             ffi::Buffer<ffi::F32> b20, ffi::Buffer<ffi::F32> w30,
                             ffi::Buffer<ffi::F32> b30, ffi::Buffer<ffi::F32> wa1,
                             ffi::Buffer<ffi::F32> w21, ffi::Buffer<ffi::F32> b21,
                             ffi::Buffer<ffi::F32> w31, ffi::Buffer<ffi::F32> b31, int32_t act,
                             ffi::ResultBuffer<ffi::F32> q_out,
                             ffi::ResultBuffer<ffi::F32> g_out) {
  const MemberArgs m[2] = {{&feats0, &wa0, &w20, &b20, &w30, &b30},
                           {&feats1, &wa1, &w21, &b21, &w31, &b31}};
  return Run(pool, Mode::kMinGrad, m, actions, act, q_out->typed_data(), g_out->typed_data());
}

// ---------------------------------------------------------------------------------------------
// Critic regression step: the loss mean_r (Q(s_r, a_r) - y_r)^2 of one member and its gradient
// with respect to every parameter (the critics' update; Adam stays in XLA).
//
// Phase 1 (row blocks, any thread): forward, the output error, and the pre-activation
// gradients gz2 = (2 e / B) w3 * f'(z2) and gz1 = (gz2 W2^T) * f'(z1), kept for all rows.
// Phase 2 (32-column panels of the outputs, any thread): dW2 = h1^T gz2, dWs = s^T gz1 and the
// small parameters. Every output element is summed over rows in a fixed order by one thread, so
// the result does not depend on which thread took which task.

struct TrainJob {
  int B, O, A, H0, H1, act, blocks, panels;
  const float *S, *X, *Y, *WS, *WA, *B0, *W2, *B2, *W3, *bwd;  // as in Job, s = S
  float bias3;
  float *H1buf, *H2buf, *GZ1, *GZ2, *E;  // all rows
  float *dWS, *dWA, *dB0, *dW2, *dB2, *dW3;
  std::atomic<int> next1{0}, done1{0}, next2{0}, done2{0};
};

void train_rows(TrainJob& job, int r0) {
  const int O = job.O, A = job.A, H0 = job.H0, H1 = job.H1, act = job.act;
  const int rows = job.B - r0 < kBlock ? job.B - r0 : kBlock;
  thread_local Scratch s_d1, s_d2, s_gh;
  float* d1 = s_d1.get(static_cast<size_t>(kBlock) * H0);
  float* d2 = s_d2.get(static_cast<size_t>(kBlock) * H1);
  float* gh = s_gh.get(static_cast<size_t>(kBlock) * H0);
  float* h1 = job.H1buf + static_cast<size_t>(r0) * H0;
  float* h2 = job.H2buf + static_cast<size_t>(r0) * H1;
  product_rm(rows, job.S + static_cast<size_t>(r0) * O, O, job.WS, H0, h1, job.B0);
  for (int r = 0; r < rows; ++r) {
    add_action_part(h1 + static_cast<size_t>(r) * H0, job.X + static_cast<size_t>(r0 + r) * A,
                    job.WA, A, H0);
  }
  activate(h1, d1, rows * H0, act);
  product_rm(rows, h1, H0, job.W2, H1, h2, job.B2);
  activate(h2, d2, rows * H1, act);
  const float scale = 2.0f / static_cast<float>(job.B);
  float* gz2 = job.GZ2 + static_cast<size_t>(r0) * H1;
  for (int r = 0; r < rows; ++r) {
    const float e = row_dot(h2 + static_cast<size_t>(r) * H1, job.W3, H1) + job.bias3 - job.Y[r0 + r];
    job.E[r0 + r] = e;
    const __m512 g = _mm512_set1_ps(scale * e);
    const float* d = d2 + static_cast<size_t>(r) * H1;
    float* out = gz2 + static_cast<size_t>(r) * H1;
    for (int c = 0; c < H1; c += 16) {
      _mm512_storeu_ps(out + c, _mm512_mul_ps(_mm512_mul_ps(g, _mm512_loadu_ps(job.W3 + c)),
                                              _mm512_loadu_ps(d + c)));
    }
  }
  product(rows, gz2, H1, 1, H1, job.bwd, kNR, static_cast<long>(H1) * kNR, H0, gh, H0, nullptr);
  float* gz1 = job.GZ1 + static_cast<size_t>(r0) * H0;
  for (int i = 0; i < rows * H0; i += 16) {
    _mm512_storeu_ps(gz1 + i, _mm512_mul_ps(_mm512_loadu_ps(gh + i), _mm512_loadu_ps(d1 + i)));
  }
}

// Column sums over all rows of m (B x n), columns [c0, c0 + 32), in row order.
inline void column_sums(const float* m, int rows, int n, int c0, const float* weight, float* out) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  for (int r = 0; r < rows; ++r) {
    const __m512 w = _mm512_set1_ps(weight ? weight[r] : 1.0f);
    a0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(m + static_cast<size_t>(r) * n + c0), a0);
    a1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(m + static_cast<size_t>(r) * n + c0 + 16), a1);
  }
  _mm512_storeu_ps(out + c0, a0);
  _mm512_storeu_ps(out + c0 + 16, a1);
}

void train_panel(TrainJob& job, int t) {
  const int B = job.B, O = job.O, A = job.A, H0 = job.H0, H1 = job.H1;
  const int p1 = H1 / kNR;
  if (t < p1) {  // dW2[:, panel] = h1^T gz2, db2, dw3 = h2^T (2 e / B)
    const int c0 = t * kNR;
    product(H0, job.H1buf, 1, H0, B, job.GZ2 + c0, H1, kNR, kNR, job.dW2 + c0, H1, nullptr);
    column_sums(job.GZ2, B, H1, c0, nullptr, job.dB2);
    thread_local Scratch s_w;
    float* w = s_w.get(static_cast<size_t>(B));
    for (int r = 0; r < B; ++r) w[r] = 2.0f * job.E[r] / static_cast<float>(B);
    column_sums(job.H2buf, B, H1, c0, w, job.dW3);
    return;
  }
  const int c0 = (t - p1) * kNR;  // dWs[:, panel] = s^T gz1, dWa, db0
  product(O, job.S, 1, O, B, job.GZ1 + c0, H0, kNR, kNR, job.dWS + c0, H0, nullptr);
  product(A, job.X, 1, A, B, job.GZ1 + c0, H0, kNR, kNR, job.dWA + c0, H0, nullptr);
  column_sums(job.GZ1, B, H0, c0, nullptr, job.dB0);
}

void train_drain(TrainJob& job) {
  for (;;) {
    const int b = job.next1.fetch_add(1, std::memory_order_relaxed);
    if (b >= job.blocks) break;
    train_rows(job, b * kBlock);
    job.done1.fetch_add(1, std::memory_order_release);
  }
  wait_for(job.done1, job.blocks);
  for (;;) {
    const int t = job.next2.fetch_add(1, std::memory_order_relaxed);
    if (t >= job.panels) return;
    train_panel(job, t);
    job.done2.fetch_add(1, std::memory_order_release);
  }
}

ffi::Error CriticTrainImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> obs,
                           ffi::Buffer<ffi::F32> actions, ffi::Buffer<ffi::F32> y,
                           ffi::Buffer<ffi::F32> ws, ffi::Buffer<ffi::F32> wa,
                           ffi::Buffer<ffi::F32> b0, ffi::Buffer<ffi::F32> w2,
                           ffi::Buffer<ffi::F32> b2, ffi::Buffer<ffi::F32> w3,
                           ffi::Buffer<ffi::F32> b3, int32_t act, ffi::ResultBuffer<ffi::F32> loss,
                           ffi::ResultBuffer<ffi::F32> d_ws, ffi::ResultBuffer<ffi::F32> d_wa,
                           ffi::ResultBuffer<ffi::F32> d_b0, ffi::ResultBuffer<ffi::F32> d_w2,
                           ffi::ResultBuffer<ffi::F32> d_b2, ffi::ResultBuffer<ffi::F32> d_w3,
                           ffi::ResultBuffer<ffi::F32> d_b3) {
  const auto od = obs.dimensions();
  const auto ad = actions.dimensions();
  const auto wd = w2.dimensions();
  if (od.size() != 2 || ad.size() != 2 || wd.size() != 2) {
    return ffi::Error::InvalidArgument("critic kernel: obs, actions and w2 must be matrices");
  }
  auto job = std::make_shared<TrainJob>();
  const int B = job->B = static_cast<int>(od[0]);
  const int O = job->O = static_cast<int>(od[1]);
  const int A = job->A = static_cast<int>(ad[1]);
  const int H0 = job->H0 = static_cast<int>(wd[0]);
  const int H1 = job->H1 = static_cast<int>(wd[1]);
  job->act = act;
  if (B <= 0 || ad[0] != B || y.element_count() != static_cast<size_t>(B) || H0 % kNR != 0 ||
      H1 % kNR != 0 || ws.element_count() != static_cast<size_t>(O) * H0 ||
      wa.element_count() != static_cast<size_t>(A) * H0 ||
      b0.element_count() != static_cast<size_t>(H0) ||
      b2.element_count() != static_cast<size_t>(H1) ||
      w3.element_count() != static_cast<size_t>(H1) || b3.element_count() != 1 ||
      (act != 0 && act != 1)) {
    return ffi::Error::InvalidArgument("critic kernel: unsupported shapes or activation");
  }
  const float* W2 = w2.typed_data();
  thread_local Scratch s_bwd, s_h1, s_h2, s_gz1, s_gz2, s_e;
  float* bwd = s_bwd.get(static_cast<size_t>(H0) * H1);
  pack_transposed(W2, H0, H1, bwd);
  job->S = obs.typed_data();
  job->X = actions.typed_data();
  job->Y = y.typed_data();
  job->WS = ws.typed_data();
  job->WA = wa.typed_data();
  job->B0 = b0.typed_data();
  job->W2 = W2;
  job->B2 = b2.typed_data();
  job->W3 = w3.typed_data();
  job->bias3 = b3.typed_data()[0];
  job->bwd = bwd;
  job->H1buf = s_h1.get(static_cast<size_t>(B) * H0);
  job->H2buf = s_h2.get(static_cast<size_t>(B) * H1);
  job->GZ1 = s_gz1.get(static_cast<size_t>(B) * H0);
  job->GZ2 = s_gz2.get(static_cast<size_t>(B) * H1);
  job->E = s_e.get(static_cast<size_t>(B));
  job->dWS = d_ws->typed_data();
  job->dWA = d_wa->typed_data();
  job->dB0 = d_b0->typed_data();
  job->dW2 = d_w2->typed_data();
  job->dB2 = d_b2->typed_data();
  job->dW3 = d_w3->typed_data();
  job->blocks = (B + kBlock - 1) / kBlock;
  job->panels = H1 / kNR + H0 / kNR;
  share_with_pool(pool, job, job->blocks, train_drain);
  wait_for(job->done2, job->panels);
  double sq = 0.0, sum = 0.0;
  for (int r = 0; r < B; ++r) {
    sq += static_cast<double>(job->E[r]) * job->E[r];
    sum += job->E[r];
  }
  loss->typed_data()[0] = static_cast<float>(sq / B);
  d_b3->typed_data()[0] = static_cast<float>(2.0 * sum / B);
  return ffi::Error::Success();
}

}  // namespace

// Version of the calling convention above; algd/kernels.py refuses a library built from another.
extern "C" int AlgdKernelAbi() { return 4; }

namespace {
// One member's forward parameters as handler arguments, in the order of MemberArgs:
// wa (A, H0), w2 (H0, H1), b2 (H1), w3 (H1, 1), b3 (1).
template <typename Binding>
auto MemberParams(Binding binding) {
  using F32 = ffi::Buffer<ffi::F32>;
  return std::move(binding)
      .template Arg<F32>()
      .template Arg<F32>()
      .template Arg<F32>()
      .template Arg<F32>()
      .template Arg<F32>();
}
}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(AlgdCriticValueGrad, CriticValueGradImpl,
                              MemberParams(ffi::Ffi::Bind()
                                               .Ctx<ffi::ThreadPool>()
                                               .Arg<ffi::Buffer<ffi::F32>>()  // feats (S, H0)
                                               .Arg<ffi::Buffer<ffi::F32>>())  // actions (P, A)
                                  .Attr<int32_t>("act")
                                  .Ret<ffi::Buffer<ffi::F32>>()  // q (P)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dq/da (P, A)
);

XLA_FFI_DEFINE_HANDLER_SYMBOL(AlgdCriticValue, CriticValueImpl,
                              MemberParams(ffi::Ffi::Bind()
                                               .Ctx<ffi::ThreadPool>()
                                               .Arg<ffi::Buffer<ffi::F32>>()  // feats (S, H0)
                                               .Arg<ffi::Buffer<ffi::F32>>())  // actions (P, A)
                                  .Attr<int32_t>("act")
                                  .Ret<ffi::Buffer<ffi::F32>>()  // q (P)
);

XLA_FFI_DEFINE_HANDLER_SYMBOL(AlgdCriticMinGrad, CriticMinGradImpl,
                              MemberParams(MemberParams(
                                  ffi::Ffi::Bind()
                                      .Ctx<ffi::ThreadPool>()
                                      .Arg<ffi::Buffer<ffi::F32>>()    // member 0's feats (S, H0)
                                      .Arg<ffi::Buffer<ffi::F32>>()    // member 1's feats (S, H0)
                                      .Arg<ffi::Buffer<ffi::F32>>()))  // actions (P, A)
                                  .Attr<int32_t>("act")
                                  .Ret<ffi::Buffer<ffi::F32>>()  // q (2, P)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d min(q) / da (P, A)
);

XLA_FFI_DEFINE_HANDLER_SYMBOL(AlgdCriticTrain, CriticTrainImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // obs (B, O)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // actions (B, A)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // targets y (B)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // ws (O, H0)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // wa (A, H0)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // b0 (H0)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w2 (H0, H1)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // b2 (H1)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w3 (H1, 1)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // b3 (1)
                                  .Attr<int32_t>("act")
                                  .Ret<ffi::Buffer<ffi::F32>>()  // loss (1)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d ws
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d wa
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d b0
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d w2
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d b2
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d w3
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d b3
);
