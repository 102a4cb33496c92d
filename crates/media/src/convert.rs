//! Colour conversion (I420 ↔ RGBA, BT.601 limited range as cameras and H.264 use) and I420
//! scaling. SIMD work is done by the `yuv` and `fast_image_resize` crates.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use yuv::{
    BufferStoreMut, YuvConversionMode, YuvPlanarImage, YuvPlanarImageMut, YuvRange,
    YuvStandardMatrix,
};

use crate::{MediaError, VideoFrame};

fn conv_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::InvalidFrame(e.to_string())
}

/// I420 → RGBA (`width*height*4` bytes).
///
/// # Errors
/// When the frame's buffer does not match its size.
pub fn i420_to_rgba(frame: &VideoFrame) -> Result<Vec<u8>, MediaError> {
    let (y, u, v) = frame.planes();
    let cw = frame.width.div_ceil(2);
    let image = YuvPlanarImage {
        y_plane: y,
        y_stride: frame.width,
        u_plane: u,
        u_stride: cw,
        v_plane: v,
        v_stride: cw,
        width: frame.width,
        height: frame.height,
    };
    let mut rgba = vec![0u8; frame.width as usize * frame.height as usize * 4];
    yuv::yuv420_to_rgba(
        &image,
        &mut rgba,
        frame.width * 4,
        YuvRange::Limited,
        YuvStandardMatrix::Bt601,
    )
    .map_err(conv_err)?;
    Ok(rgba)
}

/// RGBA → I420.
///
/// # Errors
/// When `rgba` is not `width*height*4` bytes or a side is odd-sized zero.
pub fn rgba_to_i420(rgba: &[u8], width: u32, height: u32) -> Result<VideoFrame, MediaError> {
    if width == 0 || height == 0 || rgba.len() != width as usize * height as usize * 4 {
        return Err(MediaError::InvalidFrame(format!(
            "{} bytes is not RGBA {width}x{height}",
            rgba.len()
        )));
    }
    let mut frame = VideoFrame::blank(width, height);
    let cw = width.div_ceil(2);
    {
        let (y, u, v) = frame.planes_mut();
        let mut image = YuvPlanarImageMut {
            y_plane: BufferStoreMut::Borrowed(y),
            y_stride: width,
            u_plane: BufferStoreMut::Borrowed(u),
            u_stride: cw,
            v_plane: BufferStoreMut::Borrowed(v),
            v_stride: cw,
            width,
            height,
        };
        yuv::rgba_to_yuv420(
            &mut image,
            rgba,
            width * 4,
            YuvRange::Limited,
            YuvStandardMatrix::Bt601,
            YuvConversionMode::Balanced,
        )
        .map_err(conv_err)?;
    }
    Ok(frame)
}

/// Scales I420 frames; keeps its buffers between calls.
#[derive(Debug, Default)]
pub struct Scaler {
    resizer: Resizer,
}

impl Scaler {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// `frame` scaled to `width`x`height` (bilinear; keeps number and capture time).
    ///
    /// # Errors
    /// When a size is zero or the frame's buffer is inconsistent.
    pub fn scale(
        &mut self,
        frame: &VideoFrame,
        width: u32,
        height: u32,
    ) -> Result<VideoFrame, MediaError> {
        if width == 0 || height == 0 {
            return Err(MediaError::InvalidFrame(
                "cannot scale to an empty size".into(),
            ));
        }
        let mut out = VideoFrame::blank(width, height);
        out.number = frame.number;
        out.capture_us = frame.capture_us;
        if (width, height) == (frame.width, frame.height) {
            out.data.clone_from(&frame.data);
            return Ok(out);
        }
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        let (sy, su, sv) = frame.planes();
        let sizes = [
            (frame.width, frame.height, width, height),
            (
                frame.width.div_ceil(2),
                frame.height.div_ceil(2),
                width.div_ceil(2),
                height.div_ceil(2),
            ),
            (
                frame.width.div_ceil(2),
                frame.height.div_ceil(2),
                width.div_ceil(2),
                height.div_ceil(2),
            ),
        ];
        let (dy, du, dv) = out.planes_mut();
        for ((src, dst), (sw, sh, dw, dh)) in [sy, su, sv].into_iter().zip([dy, du, dv]).zip(sizes)
        {
            let src = ImageRef::new(sw, sh, src, PixelType::U8).map_err(conv_err)?;
            let mut dst = Image::from_slice_u8(dw, dh, dst, PixelType::U8).map_err(conv_err)?;
            self.resizer
                .resize(&src, &mut dst, &options)
                .map_err(conv_err)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::psnr;
    use crate::synthetic::SyntheticCamera;

    #[test]
    fn rgba_round_trip_keeps_the_picture() {
        let f = SyntheticCamera::new(320, 180, 30.0).render(5, 0);
        let rgba = i420_to_rgba(&f).unwrap_or_default();
        assert_eq!(rgba.len(), 320 * 180 * 4);
        let back = rgba_to_i420(&rgba, 320, 180);
        let p = back.as_ref().map(|b| psnr(&f, b)).unwrap_or_default();
        assert!(p > 35.0, "round trip PSNR {p:.1} dB");
        assert!(rgba_to_i420(&rgba, 321, 180).is_err());
    }

    #[test]
    fn scaling_down_and_back_is_close() {
        let f = SyntheticCamera::new(640, 360, 30.0).render(9, 0);
        let mut s = Scaler::new();
        let small = s.scale(&f, 320, 180);
        assert_eq!(
            small.as_ref().map(|x| (x.width, x.height, x.number)).ok(),
            Some((320, 180, 9))
        );
        let back = small.and_then(|x| s.scale(&x, 640, 360));
        let p = back.as_ref().map(|b| psnr(&f, b)).unwrap_or_default();
        assert!(p > 24.0, "down-up PSNR {p:.1} dB");
        assert!(s.scale(&f, 0, 10).is_err());
    }
}
