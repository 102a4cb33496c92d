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
}
