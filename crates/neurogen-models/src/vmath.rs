//! `exp` and `tanh` on whole slices, vectorised, bit for bit what `f32::exp` and `f32::tanh`
//! give on this machine.
//!
//! The flex activation kernels spent 15–25 % of the diffusion, WaveNet and latent-ODE steps in
//! one scalar libm call per element. A vector `exp` or `tanh` of our own would move every run in
//! its last bits. These are glibc's own functions written again: `expf` is the `__expf_fma`
//! variant that x86-64 glibc (≥ 2.28) selects on CPUs with FMA (`sysdeps/ieee754/flt-32/
//! e_expf.c`: its 32-entry table, its cubic and its fused multiply-adds where GCC placed them),
//! and `tanhf` is fdlibm's (`s_tanhf.c` over `s_expm1f.c`, plain single precision), which glibc
//! ships up to 2.40. The tests check all 2³² inputs of each against libm (`exhaustive_*`,
//! ignored: 45 s for both) and a stride of them on every run.
//!
//! So that a machine with another libm (glibc 2.41 and later, whose `tanhf` is CORE-MATH's,
//! correctly rounded; another C library) keeps libm's bits, each function is used only after it
//! has agreed with libm on 2¹⁶ probe inputs, once per process; otherwise, and on anything but
//! x86-64 Linux with glibc, the slice goes through libm element by element as before. The probe
//! tells a different algorithm, which differs on a large share of inputs; a build of the same
//! algorithm that rounds differently on a handful of inputs (glibc's non-FMA `expf`, picked when
//! `GLIBC_TUNABLES` hides FMA) can pass it. Which code runs: with AVX-512 (pulp's `V4`: F, BW,
//! CD, DQ, VL), `exp` takes eight lanes at a time through `pulp`'s safe intrinsics, the table
//! lookup being two two-register permutes, and the branch-free `tanh` is vectorised by the
//! compiler; with AVX2 + FMA (pulp's `V3`), `exp` runs one lane at a time, inlined, and `tanh`
//! is vectorised on 256 bits; on older CPUs, libm.

#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
use std::sync::OnceLock;

/// `v[i] = exp(v[i])`.
pub(crate) fn exp_in_place(v: &mut [f32]) {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    if agrees(&EXP_AGREES, glibc::exp_in_place, f32::exp) && glibc::exp_in_place(v) {
        return;
    }
    v.iter_mut().for_each(|x| *x = x.exp());
}

/// `v[i] = tanh(v[i])`.
pub(crate) fn tanh_in_place(v: &mut [f32]) {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    if agrees(&TANH_AGREES, glibc::tanh_in_place, f32::tanh) && glibc::tanh_in_place(v) {
        return;
    }
    v.iter_mut().for_each(|x| *x = x.tanh());
}

#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
static EXP_AGREES: OnceLock<bool> = OnceLock::new();
#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
static TANH_AGREES: OnceLock<bool> = OnceLock::new();

/// Whether `ours` gives libm's bits on 2¹⁶ probes spread over the inputs that matter (and a
/// few that do not: infinities, NaN, subnormals). Evaluated once per process.
#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
fn agrees(cell: &OnceLock<bool>, ours: fn(&mut [f32]) -> bool, libm: fn(f32) -> f32) -> bool {
    *cell.get_or_init(|| {
        // |x| from 2⁻²⁰ to 2⁷, both signs, 2¹⁵ values each, plus the edges.
        let mut x: Vec<f32> = (0..1u32 << 15)
            .flat_map(|i| {
                let m = f32::from_bits(0x3580_0000 + i * 0x1b00);
                [m, -m]
            })
            .collect();
        // And 2⁻⁵⁵ to 2⁻²⁰, more sparsely (tanh's `expm1(x) = x` branch), and the edges.
        x.extend((0..1u32 << 10).map(|i| f32::from_bits(0x2400_0000 + i * 0x4_5000)));
        x.extend([
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e-40,
            95.0,
            -110.0,
        ]);
        let mut y = x.clone();
        ours(&mut y)
            && x.iter().zip(&y).all(|(&x, &y)| {
                let r = libm(x);
                r.to_bits() == y.to_bits() || (r.is_nan() && y.is_nan())
            })
    })
}

#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
mod glibc {
    use pulp::x86::{V3, V4};

    /// `exp` in place where the CPU has AVX2 and FMA; false (nothing done) where not.
    pub(super) fn exp_in_place(v: &mut [f32]) -> bool {
        if let Some(simd) = V4::try_new() {
            simd.vectorize(|| exp_v4(simd, v));
            true
        } else if let Some(simd) = V3::try_new() {
            simd.vectorize(|| v.iter_mut().for_each(|x| *x = expf(*x)));
            true
        } else {
            false
        }
    }

    /// `tanh` in place where the CPU has AVX2 and FMA; false (nothing done) where not.
    pub(super) fn tanh_in_place(v: &mut [f32]) -> bool {
        if let Some(simd) = V4::try_new() {
            simd.vectorize(|| v.iter_mut().for_each(|x| *x = tanhf(*x)));
            true
        } else if let Some(simd) = V3::try_new() {
            simd.vectorize(|| v.iter_mut().for_each(|x| *x = tanhf(*x)));
            true
        } else {
            false
        }
    }

    /// glibc's `__exp2f_data.tab`: `asuint64(2^(i/32)) − (i << 47)`.
    const TAB: [u64; 32] = [
        0x3ff0000000000000,
        0x3fefd9b0d3158574,
        0x3fefb5586cf9890f,
        0x3fef9301d0125b51,
        0x3fef72b83c7d517b,
        0x3fef54873168b9aa,
        0x3fef387a6e756238,
        0x3fef1e9df51fdee1,
        0x3fef06fe0a31b715,
        0x3feef1a7373aa9cb,
        0x3feedea64c123422,
        0x3feece086061892d,
        0x3feebfdad5362a27,
        0x3feeb42b569d4f82,
        0x3feeab07dd485429,
        0x3feea47eb03a5585,
        0x3feea09e667f3bcd,
        0x3fee9f75e8ec5f74,
        0x3feea11473eb0187,
        0x3feea589994cce13,
        0x3feeace5422aa0db,
        0x3feeb737b0cdc5e5,
        0x3feec49182a3f090,
        0x3feed503b23e255d,
        0x3feee89f995ad3ad,
        0x3feeff76f2fb5e47,
        0x3fef199bdd85529c,
        0x3fef3720dcef9069,
        0x3fef5818dcfba487,
        0x3fef7c97337b9b5f,
        0x3fefa4afa2a490da,
        0x3fefd0765b6e4540,
    ];
    /// 32 / ln 2 (`invln2_scaled`).
    const INV_LN2_N: f64 = f64::from_bits(0x40471547652b82fe);
    /// 1.5 · 2⁵²: adding it rounds to an integer held in the low mantissa bits (`shift`).
    const SHIFT: f64 = f64::from_bits(0x4338000000000000);
    /// The cubic for 2^(r/32) (`poly_scaled`).
    const C: [f64; 3] = [
        f64::from_bits(0x3ebc6af84b912394),
        f64::from_bits(0x3f2ebfce50fac4f3),
        f64::from_bits(0x3f962e42ff0c52d6),
    ];

    /// One lane of `__expf_fma`. Callers run inside `V3`/`V4::vectorize`, where `mul_add` is
    /// one FMA instruction.
    #[inline(always)]
    fn expf(x: f32) -> f32 {
        if slow_path(x) {
            return expf_special(x).unwrap_or_else(|| expf_core(x));
        }
        expf_core(x)
    }

    /// |x| ≥ 88, inf or NaN: where glibc takes its slow path.
    #[inline(always)]
    fn slow_path(x: f32) -> bool {
        ((x.to_bits() >> 20) & 0x7ff) >= 0x42b
    }

    /// glibc's arithmetic for |x| < 88, where it needs no range checks.
    #[inline(always)]
    fn expf_core(x: f32) -> f32 {
        let xd = x as f64;
        // GCC fused `z = InvLn2N·x` into both of its uses.
        let kd = xd.mul_add(INV_LN2_N, SHIFT);
        let ki = kd.to_bits();
        let kd = kd - SHIFT;
        let r = INV_LN2_N.mul_add(xd, -kd);
        let s = f64::from_bits(TAB[(ki & 31) as usize].wrapping_add(ki << 47));
        let z = r.mul_add(C[0], C[1]);
        let r2 = r * r;
        let y = r.mul_add(C[2], 1.0);
        let y = z.mul_add(r2, y);
        (y * s) as f32
    }

    /// glibc's `expf` on its slow path (|x| ≥ 88, inf and NaN): overflow to inf, underflow to
    /// 0 or (between ln 2⁻¹⁵⁰ and ln 2⁻¹⁴⁹) to the least subnormal; `None` between, where it
    /// is the plain arithmetic of [`expf_core`].
    #[inline(always)]
    fn expf_special(x: f32) -> Option<f32> {
        if x.is_nan() {
            Some(x + x)
        } else if x > f32::from_bits(0x42b17217) {
            Some(f32::INFINITY)
        } else if x < f32::from_bits(0xc2cff1b4) {
            Some(0.0)
        } else if x < f32::from_bits(0xc2ce8ecf) {
            Some(f32::from_bits(1))
        } else {
            None
        }
    }

    /// The table as four registers of eight entries.
    const TAB8: [[u64; 8]; 4] = {
        let mut t = [[0; 8]; 4];
        let mut i = 0;
        while i < 32 {
            t[i / 8][i % 8] = TAB[i];
            i += 1;
        }
        t
    };

    #[inline(always)]
    fn exp_v4(simd: V4, v: &mut [f32]) {
        let (lanes, tail) = pulp::as_arrays_mut::<8, f32>(v);
        for x in lanes {
            let (y, slow) = exp8(simd, *x);
            if slow {
                // Only the slow-path lanes take glibc's special values; the core's arithmetic
                // is the same on eight lanes as on one, so the others keep the vector's. (Lanes
                // one by one, through an out-of-line scalar path, were 8 % of a DDIM sampling
                // call of an untrained denoiser, whose activations reach |x| ≥ 88.)
                // `expf_special` gives no value for |x| < 88, so those lanes keep the vector's too.
                for (x, y) in x.iter_mut().zip(y) {
                    *x = expf_special(*x).unwrap_or(y);
                }
            } else {
                *x = y;
            }
        }
        tail.iter_mut().for_each(|x| *x = expf(*x));
    }

    /// [`expf_core`] on eight lanes, and whether a lane is on glibc's slow path (there the
    /// lane's value is the core's arithmetic, right only where [`expf_special`] gives none).
    #[inline(always)]
    fn exp8(simd: V4, x: [f32; 8]) -> ([f32; 8], bool) {
        use core::arch::x86_64::__m256;
        let f = simd.avx512f;
        let splat = |c: f64| f._mm512_set1_pd(c);
        let xd = f._mm512_cvtps_pd(pulp::cast::<[f32; 8], __m256>(x));
        // Not (|x| < 88): NaN counts too.
        const NLT_UQ: i32 = 5;
        let slow = f._mm512_cmp_pd_mask::<NLT_UQ>(f._mm512_abs_pd(xd), splat(88.0)) != 0;
        let kd = f._mm512_fmadd_pd(xd, splat(INV_LN2_N), splat(SHIFT));
        let ki = f._mm512_castpd_si512(kd);
        let kd = f._mm512_sub_pd(kd, splat(SHIFT));
        let r = f._mm512_fmsub_pd(splat(INV_LN2_N), xd, kd);
        // TAB[ki & 31]: each permute picks from 16 entries by the index's low four bits.
        let tab = |k: usize| f._mm512_castsi512_pd(pulp::cast(TAB8[k]));
        let low = f._mm512_permutex2var_pd(tab(0), ki, tab(1));
        let high = f._mm512_permutex2var_pd(tab(2), ki, tab(3));
        let upper = f._mm512_test_epi64_mask(ki, f._mm512_set1_epi64(16));
        let t = f._mm512_castpd_si512(f._mm512_mask_blend_pd(upper, low, high));
        let s = f._mm512_castsi512_pd(f._mm512_add_epi64(t, f._mm512_slli_epi64::<47>(ki)));
        let z = f._mm512_fmadd_pd(r, splat(C[0]), splat(C[1]));
        let r2 = f._mm512_mul_pd(r, r);
        let y = f._mm512_fmadd_pd(r, splat(C[2]), splat(1.0));
        let y = f._mm512_fmadd_pd(z, r2, y);
        let y = pulp::cast(f._mm512_cvtpd_ps(f._mm512_mul_pd(y, s)));
        (y, slow)
    }

    const INVLN2: f32 = f32::from_bits(0x3fb8aa3b);
    const LN2_HI: f32 = f32::from_bits(0x3f317180);
    const LN2_LO: f32 = f32::from_bits(0x3717f7d1);
    /// `s_expm1f.c`'s scaled coefficients Q1…Q5.
    const Q: [f32; 5] = [
        f32::from_bits(0xbd088889),
        f32::from_bits(0x3ad00d01),
        f32::from_bits(0xb8a670cd),
        f32::from_bits(0x36867e54),
        f32::from_bits(0xb457edbb),
    ];
    const TINY: f32 = f32::from_bits(0x0da24260);

    /// fdlibm's `tanhf`, every branch of it and of the `expm1f` it calls computed and the
    /// lane's own selected, so that the loop vectorises. For |x| < 22 it is `1 − 2/(t + 2)`
    /// with `t = expm1(2|x|)` (|x| ≥ 1) or `−t/(t + 2)` with `t = expm1(−2|x|)`, signed like x;
    /// `expm1`'s argument is then in (−2, 0] or [2, 44), which is all of `expm1f` it needs.
    #[inline(always)]
    fn tanhf(x: f32) -> f32 {
        let jx = x.to_bits();
        let ix = jx & 0x7fff_ffff;
        let ax = f32::from_bits(ix);
        let big = ix >= 0x3f80_0000;
        let arg = if big { 2.0 * ax } else { -2.0 * ax };

        // expm1f(arg): reduce arg = k·ln2 + (hi − lo), |hi − lo| ≤ ln2/2.
        let ha = arg.to_bits() & 0x7fff_ffff;
        let kf = (INVLN2 * arg + if big { 0.5 } else { -0.5 }) as i32;
        let (mut hi, mut lo, mut k) = (arg - kf as f32 * LN2_HI, kf as f32 * LN2_LO, kf);
        if ha < 0x3f85_1592 {
            // |arg| < 1.5 ln2: k = ±1.
            (hi, lo, k) = if big {
                (arg - LN2_HI, LN2_LO, 1)
            } else {
                (arg + LN2_HI, -LN2_LO, -1)
            };
        }
        if ha <= 0x3eb1_7218 {
            // |arg| ≤ ln2/2: no reduction.
            (hi, lo, k) = (arg, 0.0, 0);
        }
        let r = hi - lo;
        let c = (hi - r) - lo;
        let hfx = 0.5 * r;
        let hxs = r * hfx;
        let r1 = 1.0 + hxs * (Q[0] + hxs * (Q[1] + hxs * (Q[2] + hxs * (Q[3] + hxs * Q[4]))));
        let t = 3.0 - r1 * hfx;
        let e = hxs * ((r1 - t) / (6.0 - r * t));
        let e2 = (r * (e - c) - c) - hxs;
        // Adds k to a float's exponent.
        let scale = |y: f32| f32::from_bits((y.to_bits() as i32).wrapping_add(k << 23) as u32);
        let mut em1 = if k <= -2 || k > 56 {
            scale(1.0 - (e2 - r)) - 1.0
        } else if k < 23 {
            // 1 − 2⁻ᵏ
            let t = f32::from_bits((0x3f80_0000 - (0x0100_0000 >> k.clamp(0, 31))) as u32);
            scale(t - (e2 - r))
        } else {
            // 2⁻ᵏ
            let t = f32::from_bits(((0x7f - k) << 23) as u32);
            scale((r - (e2 + t)) + 1.0)
        };
        if k == 1 {
            em1 = if r < -0.25 {
                -2.0 * (e2 - (r + 0.5))
            } else {
                1.0 + 2.0 * (r - e2)
            };
        }
        if k == -1 {
            em1 = 0.5 * (r - e2) - 0.5;
        }
        if k == 0 {
            em1 = r - (r * e - hxs);
        }
        if ha < 0x3300_0000 {
            // |arg| < 2⁻²⁵: expm1 returns its argument.
            em1 = arg;
        }

        let mut z = if big {
            1.0 - 2.0 / (em1 + 2.0)
        } else {
            -em1 / (em1 + 2.0)
        };
        if ix >= 0x41b0_0000 {
            // |x| ≥ 22 (and ±inf): ±1.
            z = 1.0 - TINY;
        }
        if ix < 0x2400_0000 {
            // |x| < 2⁻⁵⁵ (and ±0): x itself, as `x·(1 + x)`.
            z = ax * (1.0 + ax);
        }
        match (ix > 0x7f80_0000, (jx as i32) < 0) {
            (true, _) => x + x,
            (false, true) => -z,
            (false, false) => z,
        }
    }
}

/// The transcriptions themselves are checked against this machine's libm (glibc 2.36 on the CI
/// machine), not through the probe that would fall back to libm when they disagree.
#[cfg(all(test, target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::{agrees, glibc, EXP_AGREES, TANH_AGREES};
    use std::sync::OnceLock;

    fn exp(v: &mut [f32]) {
        glibc::exp_in_place(v);
    }

    fn tanh(v: &mut [f32]) {
        glibc::tanh_in_place(v);
    }

    /// Whether this machine runs the transcription: the CPU has AVX2 + FMA and the probe finds
    /// the libm it was read from. Elsewhere the code uses libm and there is nothing to compare,
    /// so the test skips, unless `NEUROGEN_TEST_VMATH` is set (`.ci/run` sets it: the CI machine
    /// has glibc 2.36, which these were checked against), when it fails instead.
    fn here(
        name: &str,
        cell: &OnceLock<bool>,
        ours: fn(&mut [f32]) -> bool,
        libm: fn(f32) -> f32,
    ) -> bool {
        let ok = agrees(cell, ours, libm);
        if !ok {
            assert!(
                std::env::var_os("NEUROGEN_TEST_VMATH").is_none(),
                "{name}: the CPU lacks AVX2 + FMA, or libm is not glibc's (≤ 2.40) {name}f"
            );
            eprintln!("skipped: this machine's {name} is not the transcribed one; libm is used");
        }
        ok
    }

    /// Compares `ours` with libm on the bit patterns `start, start + step, …` below `end`;
    /// returns the first mismatch (input, libm, ours).
    fn first_mismatch(
        ours: fn(&mut [f32]),
        libm: fn(f32) -> f32,
        start: u64,
        end: u64,
        step: u64,
    ) -> Option<(f32, f32, f32)> {
        let mut x = Vec::with_capacity(1 << 20);
        let mut at = start;
        while at < end {
            x.clear();
            while x.len() < 1 << 20 && at < end {
                x.push(f32::from_bits(at as u32));
                at += step;
            }
            let mut y = x.clone();
            ours(&mut y);
            for (&x, &y) in x.iter().zip(&y) {
                let r = libm(x);
                if r.to_bits() != y.to_bits() && !(r.is_nan() && y.is_nan()) {
                    return Some((x, r, y));
                }
            }
        }
        None
    }

    fn check(ours: fn(&mut [f32]), libm: fn(f32) -> f32, edges: &[f32]) {
        // Every 251st bit pattern (17 million of them, both signs, NaNs and infinities among
        // them), and every pattern near each edge of the functions' branches.
        assert_eq!(first_mismatch(ours, libm, 0, 1 << 32, 251), None);
        for &edge in edges {
            let b = edge.to_bits() as u64;
            let span = b.saturating_sub(4096)..(b + 4096).min(1 << 32);
            assert_eq!(
                first_mismatch(ours, libm, span.start, span.end, 1),
                None,
                "{edge}"
            );
        }
        // Lengths that leave a tail after the eight-lane steps, with slow-path lanes among them.
        for n in 0..20 {
            let x: Vec<f32> = (0..n).map(|i| i as f32 * 9.7 - 95.0).collect();
            let mut y = x.clone();
            ours(&mut y);
            let r: Vec<u32> = x.iter().map(|&x| libm(x).to_bits()).collect();
            assert_eq!(y.iter().map(|y| y.to_bits()).collect::<Vec<_>>(), r);
        }
    }

    #[test]
    fn exp_matches_libm_bit_for_bit() {
        if !here("exp", &EXP_AGREES, glibc::exp_in_place, f32::exp) {
            return;
        }
        let edges = [
            88.0, 88.72283, -88.0, -103.27892, -103.97208, 0.0, -0.0, 1.0, -1.0,
        ];
        check(exp, f32::exp, &edges);
    }

    #[test]
    fn tanh_matches_libm_bit_for_bit() {
        if !here("tanh", &TANH_AGREES, glibc::tanh_in_place, f32::tanh) {
            return;
        }
        // Where fdlibm switches: |x| = 2⁻⁵⁵, ln2/4, 1.5·ln2/2, 1, 27·ln2/2, 22, and where the
        // expm1 argument's k reaches 23 and 57 (2|x| = 23·ln2, 57·ln2).
        let edges = [
            2.7755576e-17,
            0.1732868,
            0.5198604,
            1.0,
            9.35688,
            22.0,
            7.9714,
            19.7553,
        ];
        let both: Vec<f32> = edges.iter().flat_map(|&e| [e, -e]).collect();
        check(tanh, f32::tanh, &both);
    }

    /// The probe rejects a function that differs from libm in one last bit.
    #[test]
    fn the_probe_rejects_a_function_one_bit_off() {
        let off_by_one: fn(&mut [f32]) -> bool = |v| {
            v.iter_mut()
                .for_each(|x| *x = f32::from_bits(x.exp().to_bits() ^ 1));
            true
        };
        assert!(!agrees(&OnceLock::new(), off_by_one, f32::exp));
        assert!(agrees(
            &OnceLock::new(),
            |v| {
                v.iter_mut().for_each(|x| *x = x.exp());
                true
            },
            f32::exp
        ));
    }

    /// All 2³² inputs (45 s for both):
    /// `cargo test --release --workspace --lib -- --ignored exhaustive`.
    #[test]
    #[ignore]
    fn exhaustive_exp() {
        if !here("exp", &EXP_AGREES, glibc::exp_in_place, f32::exp) {
            return;
        }
        assert_eq!(first_mismatch(exp, f32::exp, 0, 1 << 32, 1), None);
    }

    #[test]
    #[ignore]
    fn exhaustive_tanh() {
        if !here("tanh", &TANH_AGREES, glibc::tanh_in_place, f32::tanh) {
            return;
        }
        assert_eq!(first_mismatch(tanh, f32::tanh, 0, 1 << 32, 1), None);
    }
}
