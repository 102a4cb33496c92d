//! Objective quality measures for tests and benchmarks.

use crate::VideoFrame;

/// PSNR in dB over all three I420 planes (identical frames give `f64::INFINITY`; frames of
/// different sizes give 0).
#[must_use]
pub fn psnr(a: &VideoFrame, b: &VideoFrame) -> f64 {
    if (a.width, a.height) != (b.width, b.height)
        || a.data.len() != b.data.len()
        || a.data.is_empty()
    {
        return 0.0;
    }
    let sse: u64 = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| u64::from(x.abs_diff(*y)).pow(2))
        .sum();
    if sse == 0 {
        return f64::INFINITY;
    }
    let mse = sse as f64 / a.data.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

/// PSNR in dB of one 8-bit plane against another of the same size (`f64::INFINITY` when equal,
/// 0 when the sizes differ).
#[must_use]
pub fn psnr_plane(a: &[u8], b: &[u8]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let sse: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)).pow(2))
        .sum();
    if sse == 0 {
        return f64::INFINITY;
    }
    10.0 * (255.0f64 * 255.0 / (sse as f64 / a.len() as f64)).log10()
}

/// SSIM of one 8-bit `width`x`height` plane against another: the mean over 8x8 windows on a
/// 4-pixel grid, with the usual constants (K1 0.01, K2 0.03). 1 means identical; 0 when the
/// sizes differ or the plane is smaller than a window.
#[must_use]
pub fn ssim_plane(a: &[u8], b: &[u8], width: usize, height: usize) -> f64 {
    const WIN: usize = 8;
    const STEP: usize = 4;
    let n = width * height;
    if a.len() != n || b.len() != n || width < WIN || height < WIN {
        return 0.0;
    }
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let (mut total, mut windows) = (0.0f64, 0u32);
    for y0 in (0..=height - WIN).step_by(STEP) {
        for x0 in (0..=width - WIN).step_by(STEP) {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0u64, 0u64, 0u64, 0u64, 0u64);
            for y in y0..y0 + WIN {
                let row = y * width + x0;
                let (ra, rb) = (a.get(row..row + WIN), b.get(row..row + WIN));
                let (Some(ra), Some(rb)) = (ra, rb) else {
                    continue;
                };
                for (&p, &q) in ra.iter().zip(rb) {
                    let (p, q) = (u64::from(p), u64::from(q));
                    sa += p;
                    sb += q;
                    saa += p * p;
                    sbb += q * q;
                    sab += p * q;
                }
            }
            let k = (WIN * WIN) as f64;
            let (ma, mb) = (sa as f64 / k, sb as f64 / k);
            let va = saa as f64 / k - ma * ma;
            let vb = sbb as f64 / k - mb * mb;
            let cov = sab as f64 / k - ma * mb;
            total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2))
                / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            windows += 1;
        }
    }
    total / f64::from(windows.max(1))
}

/// Root mean square of `samples` (0 for none): a level to tell speech from silence.
#[must_use]
pub fn rms(samples: &[f32]) -> f32 {
    (samples.iter().map(|s| s * s).sum::<f32>() / samples.len().max(1) as f32).sqrt()
}

/// The delay (in samples) at which `received` best matches `reference`, searched in
/// `0..=max_delay`, and the normalised correlation there.
#[must_use]
pub fn aligned_correlation(reference: &[f32], received: &[f32], max_delay: usize) -> (usize, f64) {
    let corr_at = |delay: usize, step: usize| -> f64 {
        let shifted = received.get(delay..).unwrap_or_default();
        let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
        for (x, y) in reference.iter().zip(shifted).step_by(step) {
            let (x, y) = (f64::from(*x), f64::from(*y));
            xy += x * y;
            xx += x * x;
            yy += y * y;
        }
        if xx == 0.0 || yy == 0.0 {
            0.0
        } else {
            xy / (xx * yy).sqrt()
        }
    };
    // Coarse pass on every 8th sample and delay, then refine around the best.
    let mut best = (0, f64::MIN);
    for delay in (0..=max_delay).step_by(8) {
        let c = corr_at(delay, 8);
        if c > best.1 {
            best = (delay, c);
        }
    }
    let (lo, hi) = (best.0.saturating_sub(8), (best.0 + 8).min(max_delay));
    let mut fine = (best.0, f64::MIN);
    for delay in lo..=hi {
        let c = corr_at(delay, 1);
        if c > fine.1 {
            fine = (delay, c);
        }
    }
    fine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_behaves() {
        let a = VideoFrame::blank(16, 16);
        let mut b = a.clone();
        assert!(psnr(&a, &b).is_infinite());
        b.data[0] = b.data[0].wrapping_add(10);
        let p = psnr(&a, &b);
        assert!(p > 40.0 && p.is_finite());
        assert_eq!(psnr(&a, &VideoFrame::blank(8, 8)), 0.0);
    }

    #[test]
    fn finds_the_delay() {
        let reference: Vec<f32> = (0..20_000)
            .map(|i| ((i as f32) * 0.013).sin() * ((i as f32) * 0.0007).cos())
            .collect();
        let mut received = vec![0.0f32; 1234];
        received.extend(reference.iter().map(|x| x * 0.5));
        let (delay, c) = aligned_correlation(&reference, &received, 4000);
        assert_eq!(delay, 1234);
        assert!(c > 0.999, "{c}");
    }

    #[test]
    fn plane_psnr_and_ssim_fall_with_damage() {
        let (w, h) = (64usize, 48usize);
        let a: Vec<u8> = (0..w * h)
            .map(|i| ((i % w) * 3 + (i / w) * 2) as u8)
            .collect();
        assert!(psnr_plane(&a, &a).is_infinite());
        assert!((ssim_plane(&a, &a, w, h) - 1.0).abs() < 1e-9);
        let mut noisy = a.clone();
        let mut seed = 7u32;
        for p in &mut noisy {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *p = p.saturating_add((seed >> 28) as u8);
        }
        let flat = vec![128u8; w * h];
        let (p_noisy, s_noisy) = (psnr_plane(&a, &noisy), ssim_plane(&a, &noisy, w, h));
        let (p_flat, s_flat) = (psnr_plane(&a, &flat), ssim_plane(&a, &flat, w, h));
        assert!(p_noisy > 20.0 && p_noisy < 40.0, "{p_noisy}");
        assert!(s_noisy > 0.5 && s_noisy < 0.999, "{s_noisy}");
        assert!(p_flat < p_noisy && s_flat < s_noisy, "{p_flat} {s_flat}");
        assert_eq!(ssim_plane(&a, &a[1..], w, h), 0.0);
        assert_eq!(psnr_plane(&a, &a[1..]), 0.0);
    }
}
