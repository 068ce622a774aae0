/* The fused semi-implicit LTC loop on sparse synapses: forward and analytic backward.
 *
 * Included twice by ltc_loop.c, once per precision: REAL is the float type, FN(name) adds its
 * suffix, and FN(sigmoid_tile)(y, u, sigma, bias) sets y[l] = sigmoid(sigma * u[l] + bias) for a
 * tile. The math is liquidcore/functional/ltc.py's
 * (_fused_forward and _FusedSemiImplicit.backward), term for term; that module's docstring
 * derives it. Per sub-step, for unit j (synapses e sorted by destination):
 *
 *   y_e = sigmoid(sigma_e * v[src_e] + bias_e)
 *   A_j = sum_e wa_e * y_e + drive_A[j],  Bd_j = sum_e wb_e * y_e + drive_B[j]
 *   D_j = cu_j + dt * Bd_j,  q_j = dt / D_j,  r_j = A_j - Bd_j * v_j,  v'_j = v_j + q_j * r_j
 *
 * Layout: unit-major, a state is [H, B] with streams along the row. Work is split into tiles of
 * TILE streams (columns); tiles are independent, so threads take whole tiles and the inner loops
 * run over a tile's columns with a constant trip count (vectorised). A tile's padding columns
 * get v = 0, Δt = 0 and g = 0, which keeps them finite and contributes exact zeros.
 */

/* Load columns [b0, b0 + n) of rows [0, rows) of a row-major [rows, B] array into a
 * [rows, TILE] tile, zero-padded. */
static void FN(load_tile)(REAL *tile, const REAL *a, int rows, long B, long b0, int n) {
    for (int j = 0; j < rows; ++j) {
        const REAL *row = a + j * B + b0;
        REAL *t = tile + (long)j * TILE;
        for (int l = 0; l < n; ++l) t[l] = row[l];
        for (int l = n; l < TILE; ++l) t[l] = 0;
    }
}

static void FN(store_tile)(REAL *a, const REAL *tile, int rows, long B, long b0, int n) {
    for (int j = 0; j < rows; ++j) {
        REAL *row = a + j * B + b0;
        const REAL *t = tile + (long)j * TILE;
        for (int l = 0; l < n; ++l) row[l] = t[l];
    }
}

/* One sub-step: vn = v + q * (A - Bd * v); keeps z = [A; Bd] (each [H, TILE]) when z != NULL. */
static void FN(substep)(const REAL *v, REAL *vn, const REAL *d, const REAL *h, const REAL *cu,
                        const REAL *pair_w, const REAL *reduce_w, const int64_t *src,
                        const int64_t *starts, int H, long E, REAL *z) {
    const REAL *wa = reduce_w, *wb = reduce_w + E;
    for (int j = 0; j < H; ++j) {
        REAL acc_a[TILE], acc_b[TILE];
        for (int l = 0; l < TILE; ++l) acc_a[l] = acc_b[l] = 0;
        const long e1 = j + 1 < H ? starts[j + 1] : E;
        for (long e = starts[j]; e < e1; ++e) {
            const REAL sigma = pair_w[2 * e], bias = pair_w[2 * e + 1];
            const REAL a = wa[e], b = wb[e];
            REAL y[TILE];
            FN(sigmoid_tile)(y, v + src[e] * TILE, sigma, bias);
#pragma omp simd
            for (int l = 0; l < TILE; ++l) {
                acc_a[l] += a * y[l];
                acc_b[l] += b * y[l];
            }
        }
        const REAL *dA = d + (long)j * TILE, *dB = d + (long)(H + j) * TILE;
        const REAL *vj = v + (long)j * TILE;
        REAL *out = vn + (long)j * TILE;
#pragma omp simd
        for (int l = 0; l < TILE; ++l) {
            const REAL A = acc_a[l] + dA[l], Bd = acc_b[l] + dB[l];
            const REAL q = h[l] / (cu[j] + h[l] * Bd);
            out[l] = vj[l] + q * (A - Bd * vj[l]);
            acc_a[l] = A;
            acc_b[l] = Bd;
        }
        if (z) {
            memcpy(z + (long)j * TILE, acc_a, sizeof acc_a);
            memcpy(z + (long)(H + j) * TILE, acc_b, sizeof acc_b);
        }
    }
}

/* Forward: out[t] is the state after step t ([T, H, B]). */
void FN(ltc_forward)(int T, int H, long B, long E, int U, const REAL *v0, const REAL *drive,
                     const REAL *dt, const REAL *cu, const REAL *pair_w, const REAL *reduce_w,
                     const int64_t *src, const int64_t *starts, REAL *out, int threads) {
    const long tiles = (B + TILE - 1) / TILE;
#pragma omp parallel num_threads(threads)
    {
        REAL *buf = malloc(sizeof(REAL) * TILE * (4L * H + 1));
        REAL *va = buf, *vb = va + (long)H * TILE, *d = vb + (long)H * TILE;
        REAL *h = d + 2L * H * TILE;
#pragma omp for schedule(static)
        for (long tile = 0; tile < tiles; ++tile) {
            const long b0 = tile * TILE;
            const int n = (int)(B - b0 < TILE ? B - b0 : TILE);
            FN(load_tile)(va, v0, H, B, b0, n);
            for (int t = 0; t < T; ++t) {
                FN(load_tile)(d, drive + (long)t * 2 * H * B, 2 * H, B, b0, n);
                FN(load_tile)(h, dt + (long)t * B, 1, B, b0, n);
                for (int k = 0; k < U; ++k) {
                    FN(substep)(va, vb, d, h, cu, pair_w, reduce_w, src, starts, H, E, NULL);
                    REAL *swap = va;
                    va = vb;
                    vb = swap;
                }
                FN(store_tile)(out + (long)t * H * B, va, H, B, b0, n);
            }
        }
        free(buf);
    }
}

/* Backward of ltc_forward given g_out = dL/d out ([T, H, B]). Writes g_v0 [H, B]; g_drive
 * [T, 2H, B] and g_dt [T, B] when not NULL; and adds each thread's parameter gradients into its
 * row of acc ([threads, 4E + H]: d pair_w as (sigma, bias) interleaved [2E], d reduce_w [2E],
 * d cu [H]). The state before each step is recomputed from the checkpoint out[t - 1]. */
void FN(ltc_backward)(int T, int H, long B, long E, int U, const REAL *v0, const REAL *out,
                      const REAL *drive, const REAL *dt, const REAL *cu, const REAL *pair_w,
                      const REAL *reduce_w, const int64_t *src, const int64_t *starts,
                      const REAL *g_out, REAL *g_v0, REAL *g_drive, REAL *g_dt, REAL *acc,
                      int threads) {
    const long tiles = (B + TILE - 1) / TILE;
    const REAL *wa = reduce_w, *wb = reduce_w + E;
#pragma omp parallel num_threads(threads)
    {
        const long HT = (long)H * TILE;
        /* vs: U + 1 sub-step states; zs: U sub-steps' [A; Bd]; lanes: per-column parameter
         * gradients (sigma, bias, wa, wb over E, then cu over H), summed into acc at the end. */
        REAL *buf = malloc(sizeof(REAL) * TILE * ((U + 1) * H + 2L * U * H + 2L * H + 2L * H
                                                  + 4 * H + 2 + 4 * E + H));
        REAL *vs = buf, *zs = vs + (U + 1) * HT, *d = zs + 2 * U * HT, *gd = d + 2 * HT;
        REAL *g = gd + 2 * HT, *gn = g + HT, *ga = gn + HT, *gb = ga + HT, *h = gb + HT;
        REAL *gh = h + TILE, *lanes = gh + TILE;
        REAL *l_sigma = lanes, *l_bias = lanes + E * TILE, *l_wa = l_bias + E * TILE;
        REAL *l_wb = l_wa + E * TILE, *l_cu = l_wb + E * TILE;
        memset(lanes, 0, sizeof(REAL) * TILE * (4 * E + H));
#pragma omp for schedule(static)
        for (long tile = 0; tile < tiles; ++tile) {
            const long b0 = tile * TILE;
            const int n = (int)(B - b0 < TILE ? B - b0 : TILE);
            memset(g, 0, sizeof(REAL) * HT);
            for (int t = T - 1; t >= 0; --t) {
                /* g += dL/d out[t]: the gradient reaching the state after step t */
                FN(load_tile)(gn, g_out + (long)t * H * B, H, B, b0, n);
                for (long i = 0; i < HT; ++i) g[i] += gn[i];
                FN(load_tile)(vs, t == 0 ? v0 : out + (long)(t - 1) * H * B, H, B, b0, n);
                FN(load_tile)(d, drive + (long)t * 2 * H * B, 2 * H, B, b0, n);
                FN(load_tile)(h, dt + (long)t * B, 1, B, b0, n);
                for (int k = 0; k < U; ++k)
                    FN(substep)(vs + k * HT, vs + (k + 1) * HT, d, h, cu, pair_w, reduce_w, src,
                                starts, H, E, zs + 2 * k * HT);
                memset(gd, 0, sizeof(REAL) * 2 * HT);
                memset(gh, 0, sizeof(REAL) * TILE);
                for (int k = U - 1; k >= 0; --k) {
                    const REAL *v = vs + k * HT, *vn = vs + (k + 1) * HT, *z = zs + 2 * k * HT;
                    for (int j = 0; j < H; ++j) {
                        const long o = (long)j * TILE;
#pragma omp simd
                        for (int l = 0; l < TILE; ++l) {
                            const REAL A = z[o + l], Bd = z[HT + o + l];
                            const REAL D = cu[j] + h[l] * Bd, q = h[l] / D;
                            const REAL r = A - Bd * v[o + l];
                            const REAL gA = g[o + l] * q;
                            const REAL gB = gA * vn[o + l]; /* -dL/dBd */
                            l_cu[o + l] += gA * r / D;
                            gh[l] += g[o + l] * r / D * (cu[j] / D);
                            ga[o + l] = gA;
                            gb[o + l] = gB;
                            gd[o + l] += gA;
                            gd[HT + o + l] += gB;
                            gn[o + l] = g[o + l] - gA * Bd;
                        }
                    }
                    for (int j = 0; j < H; ++j) {
                        const long o = (long)j * TILE;
                        const long e1 = j + 1 < H ? starts[j + 1] : E;
                        for (long e = starts[j]; e < e1; ++e) {
                            const REAL sigma = pair_w[2 * e], bias = pair_w[2 * e + 1];
                            const REAL a = wa[e], b = wb[e];
                            const long s = src[e] * TILE, el = e * TILE;
                            REAL y[TILE];
                            FN(sigmoid_tile)(y, v + s, sigma, bias);
#pragma omp simd
                            for (int l = 0; l < TILE; ++l) {
                                const REAL u = v[s + l];
                                const REAL gy = ga[o + l] * a - gb[o + l] * b;
                                const REAL gx = gy * y[l] * ((REAL)1 - y[l]);
                                l_wa[el + l] += y[l] * ga[o + l];
                                l_wb[el + l] += y[l] * gb[o + l];
                                l_sigma[el + l] += u * gx;
                                l_bias[el + l] += gx;
                                gn[s + l] += gx * sigma;
                            }
                        }
                    }
                    REAL *swap = g;
                    g = gn;
                    gn = swap;
                }
                if (g_drive) {
                    for (long i = HT; i < 2 * HT; ++i) gd[i] = -gd[i];
                    FN(store_tile)(g_drive + (long)t * 2 * H * B, gd, 2 * H, B, b0, n);
                }
                if (g_dt) FN(store_tile)(g_dt + (long)t * B, gh, 1, B, b0, n);
            }
            FN(store_tile)(g_v0, g, H, B, b0, n);
        }
        /* lanes -> this thread's row of acc, with the signs of the autograd node's inputs */
        REAL *row = acc + (long)omp_get_thread_num() * (4 * E + H);
        for (long e = 0; e < E; ++e) {
            REAL s_sigma = 0, s_bias = 0, s_wa = 0, s_wb = 0;
            for (int l = 0; l < TILE; ++l) {
                s_sigma += l_sigma[e * TILE + l];
                s_bias += l_bias[e * TILE + l];
                s_wa += l_wa[e * TILE + l];
                s_wb += l_wb[e * TILE + l];
            }
            row[2 * e] += s_sigma;
            row[2 * e + 1] += s_bias;
            row[2 * E + e] += s_wa;
            row[3 * E + e] -= s_wb;
        }
        for (int j = 0; j < H; ++j) {
            REAL s = 0;
            for (int l = 0; l < TILE; ++l) s += l_cu[(long)j * TILE + l];
            row[4 * E + j] -= s;
        }
        free(buf);
    }
}
