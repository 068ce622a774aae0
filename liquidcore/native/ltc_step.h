/* One LTC inference step, start to end, in one call: input mapping, sensory drive, the
 * semi-implicit unfolds and the output mapping, on batch-major tensors as the cell receives and
 * returns them (x [B, S], h [B, H], dt [B] -> h' [B, H], out [B, M]).
 *
 * Included twice by ltc_loop.c, after ltc_loop.h (it reuses FN(substep) and the tiles). The
 * math is the sequence kernels' for T = 1, with the drive computed here as
 * liquidcore/functional/ltc_synapses.py's currents() + the leak term (ltc_fold.py).
 *
 * Two layouts, because the per-call work differs by an order of magnitude at small B:
 *   - tiles of TILE streams, vectorised across streams (the sequence kernels' layout), for tiles
 *     with more than ROW_MAX streams;
 *   - one stream at a time, vectorised across synapses (a tile would compute TILE lanes for
 *     one stream), for the few streams of a small batch or a tail tile.
 */

/* u * w + b (either may be absent) rounded as the PyTorch path rounds it, the product first:
 * a fused multiply-add here would make a Δt = 0 step's output differ from output_of(h). */
static inline REAL FN(affine)(REAL u, const REAL *w, const REAL *b, long i) {
    if (w) {
        volatile REAL p = u * w[i];
        u = p;
    }
    return b ? u + b[i] : u;
}

/* y[e] = sigmoid(sigma[e] * u[src[e]] + bias[e]) for e in [0, n) */
static void FN(sigmoid_gather)(REAL *y, const REAL *u, const int64_t *src, const REAL *sigma,
                               const REAL *bias, long n) {
    for (long e = 0; e < n; ++e) y[e] = sigma[e] * u[src[e]] + bias[e];
    FN(sigmoid_array)(y, n);
}

/* z[j] += sum over unit j's synapses of wa[e] * y[e]; z[H + j] += ... wb[e] * y[e] */
static void FN(reduce_row)(REAL *z, const REAL *y, const REAL *wa, const REAL *wb,
                           const int64_t *starts, int H, long E) {
    for (int j = 0; j < H; ++j) {
        const long e1 = j + 1 < H ? starts[j + 1] : E;
        REAL a = 0, b = 0;
        for (long e = starts[j]; e < e1; ++e) {
            a += wa[e] * y[e];
            b += wb[e] * y[e];
        }
        z[j] += a;
        z[H + j] += b;
    }
}

/* Stream b alone. buf: 2H (states) + 2H (drive) + 2H (z) + S + max(E, Es) scratch. */
static void FN(step_row)(const ltc_step_plan *p, long b, const REAL *x, const REAL *h0,
                         const REAL *dt, REAL *h_new, REAL *out, REAL *buf) {
    const int H = p->H, S = p->S, M = p->M;
    const REAL *leak = p->leak, *cu = p->cu, *in_w = p->in_w, *in_b = p->in_b;
    const REAL *s_sigma = p->s_sigma, *s_bias = p->s_bias, *s_w = p->s_reduce_w;
    const REAL *sigma = p->sigma, *bias = p->bias, *w = p->reduce_w;
    const REAL *out_w = p->out_w, *out_b = p->out_b;
    REAL *v = buf, *vn = v + H, *d = vn + H, *z = d + 2 * H, *xm = z + 2 * H, *y = xm + S;
    for (int s = 0; s < S; ++s) xm[s] = FN(affine)(x[b * S + s], in_w, in_b, s);
    memset(d, 0, sizeof(REAL) * 2 * H);
    FN(sigmoid_gather)(y, xm, p->s_src, s_sigma, s_bias, p->Es);
    FN(reduce_row)(d, y, s_w, s_w + p->Es, p->s_starts, H, p->Es);
    for (int j = 0; j < 2 * H; ++j) d[j] += leak[j];
    memcpy(v, h0 + b * H, sizeof(REAL) * H);
    const REAL h = dt[b];
    for (int k = 0; k < p->U; ++k) {
        memcpy(z, d, sizeof(REAL) * 2 * H);
        FN(sigmoid_gather)(y, v, p->src, sigma, bias, p->E);
        FN(reduce_row)(z, y, w, w + p->E, p->starts, H, p->E);
        for (int j = 0; j < H; ++j) {
            const REAL A = z[j], Bd = z[H + j];
            const REAL q = h / (cu[j] + h * Bd);
            vn[j] = v[j] + q * (A - Bd * v[j]);
        }
        REAL *swap = v;
        v = vn;
        vn = swap;
    }
    memcpy(h_new + b * H, v, sizeof(REAL) * H);
    for (int m = 0; m < M; ++m) out[b * M + m] = FN(affine)(v[m], out_w, out_b, m);
}

/* Streams [b0, b0 + n) as one tile. buf: 2 HT (states) + 2 HT (drive) + S TILE + TILE. */
static void FN(step_tile)(const ltc_step_plan *p, long b0, int n, const REAL *x, const REAL *h0,
                          const REAL *dt, REAL *h_new, REAL *out, REAL *buf) {
    const int H = p->H, S = p->S, M = p->M;
    const long HT = (long)H * TILE, Es = p->Es;
    const REAL *leak = p->leak, *in_w = p->in_w, *in_b = p->in_b;
    const REAL *s_sigma = p->s_sigma, *s_bias = p->s_bias;
    const REAL *s_wa = p->s_reduce_w, *s_wb = s_wa + Es;
    const REAL *out_w = p->out_w, *out_b = p->out_b;
    REAL *va = buf, *vb = va + HT, *d = vb + HT, *xm = d + 2 * HT, *h = xm + (long)S * TILE;
    for (int s = 0; s < S; ++s) {
        REAL *row = xm + (long)s * TILE;
        for (int l = 0; l < n; ++l) row[l] = FN(affine)(x[(b0 + l) * S + s], in_w, in_b, s);
        for (int l = n; l < TILE; ++l) row[l] = 0;
    }
    for (int j = 0; j < H; ++j) {
        REAL acc_a[TILE], acc_b[TILE];
        for (int l = 0; l < TILE; ++l) acc_a[l] = acc_b[l] = 0;
        const long e1 = j + 1 < H ? p->s_starts[j + 1] : Es;
        for (long e = p->s_starts[j]; e < e1; ++e) {
            REAL y[TILE];
            FN(sigmoid_tile)(y, xm + p->s_src[e] * TILE, s_sigma[e], s_bias[e]);
            const REAL a = s_wa[e], b = s_wb[e];
#pragma omp simd
            for (int l = 0; l < TILE; ++l) {
                acc_a[l] += a * y[l];
                acc_b[l] += b * y[l];
            }
        }
        for (int l = 0; l < TILE; ++l) {
            d[(long)j * TILE + l] = acc_a[l] + leak[j];
            d[(long)(H + j) * TILE + l] = acc_b[l] + leak[H + j];
        }
    }
    for (int j = 0; j < H; ++j) {
        REAL *row = va + (long)j * TILE;
        for (int l = 0; l < n; ++l) row[l] = h0[(b0 + l) * H + j];
        for (int l = n; l < TILE; ++l) row[l] = 0;
    }
    for (int l = 0; l < TILE; ++l) h[l] = l < n ? dt[b0 + l] : 0;
    for (int k = 0; k < p->U; ++k) {
        FN(substep)(va, vb, d, h, p->cu, p->pair_w, p->reduce_w, p->src, p->starts, H, p->E,
                    NULL);
        REAL *swap = va;
        va = vb;
        vb = swap;
    }
    for (int l = 0; l < n; ++l) {
        REAL *hr = h_new + (b0 + l) * H, *orow = out + (b0 + l) * M;
        for (int j = 0; j < H; ++j) hr[j] = va[(long)j * TILE + l];
        for (int m = 0; m < M; ++m) orow[m] = FN(affine)(va[(long)m * TILE + l], out_w, out_b, m);
    }
}

void FN(ltc_step)(const ltc_step_plan *p, long B, const REAL *x, const REAL *h0, const REAL *dt,
                  REAL *h_new, REAL *out, int threads) {
    const long tiles = (B + TILE - 1) / TILE;
    const long E = p->E > p->Es ? p->E : p->Es;
    const long HT = (long)p->H * TILE;
    const long row_size = 6L * p->H + p->S + E;
    const long tile_size = 4 * HT + (long)p->S * TILE + TILE;
    const long size = row_size > tile_size ? row_size : tile_size;
    if (B <= ROW_MAX) { /* no parallel region for a handful of streams */
        REAL *buf = malloc(sizeof(REAL) * size);
        for (long b = 0; b < B; ++b) FN(step_row)(p, b, x, h0, dt, h_new, out, buf);
        free(buf);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        REAL *buf = malloc(sizeof(REAL) * size);
#pragma omp for schedule(static)
        for (long tile = 0; tile < tiles; ++tile) {
            const long b0 = tile * TILE;
            const int n = (int)(B - b0 < TILE ? B - b0 : TILE);
            if (n <= ROW_MAX)
                for (long b = b0; b < b0 + n; ++b) FN(step_row)(p, b, x, h0, dt, h_new, out, buf);
            else
                FN(step_tile)(p, b0, n, x, h0, dt, h_new, out, buf);
        }
        free(buf);
    }
}
