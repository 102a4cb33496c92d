//! Camera pixel formats to I420: YUYV (4:2:2 packed), NV12 (4:2:0 semi-planar), MJPEG, RGB.
//! Colour conversion is the `yuv` crate's; JPEG decoding is zune-jpeg's (what `image` uses).

use yuv::{
    BufferStoreMut, YuvConversionMode, YuvPackedImage, YuvPlanarImageMut, YuvRange,
    YuvStandardMatrix,
};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::{MediaError, VideoFrame};

fn check(len: usize, need: usize, what: &str) -> Result<(), MediaError> {
    if len < need {
        return Err(MediaError::InvalidFrame(format!(
            "{what}: {len} bytes, need {need}"
        )));
    }
    Ok(())
}

/// YUYV (Y0 U Y1 V per two pixels) → I420 (the `yuv` crate's SIMD conversion).
///
/// # Errors
/// When the buffer is short or a side is odd or zero.
pub fn yuyv_to_i420(src: &[u8], width: u32, height: u32) -> Result<VideoFrame, MediaError> {
    if width == 0 || height == 0 || width % 2 == 1 || height % 2 == 1 {
        return Err(MediaError::InvalidFrame(format!("YUYV {width}x{height}")));
    }
    let (w, h) = (width as usize, height as usize);
    check(src.len(), w * h * 2, "YUYV")?;
    let packed = YuvPackedImage {
        yuy: src.get(..w * h * 2).unwrap_or_default(),
        yuy_stride: width * 2,
        width,
        height,
    };
    let mut frame = VideoFrame::blank(width, height);
    {
        let mut planar = planar(&mut frame);
        yuv::yuyv422_to_yuv420(&mut planar, &packed)
            .map_err(|e| MediaError::InvalidFrame(format!("YUYV: {e}")))?;
    }
    Ok(frame)
}

/// The planes of an I420 frame as the `yuv` crate's destination.
fn planar(frame: &mut VideoFrame) -> YuvPlanarImageMut<'_, u8> {
    let (width, height) = (frame.width, frame.height);
    let cw = width.div_ceil(2);
    let (y, u, v) = frame.planes_mut();
    YuvPlanarImageMut {
        y_plane: BufferStoreMut::Borrowed(y),
        y_stride: width,
        u_plane: BufferStoreMut::Borrowed(u),
        u_stride: cw,
        v_plane: BufferStoreMut::Borrowed(v),
        v_stride: cw,
        width,
        height,
    }
}

/// NV12 (Y plane, then interleaved UV at half resolution) → I420.
///
/// # Errors
/// When the buffer is short or a side is zero.
pub fn nv12_to_i420(src: &[u8], width: u32, height: u32) -> Result<VideoFrame, MediaError> {
    if width == 0 || height == 0 {
        return Err(MediaError::InvalidFrame(format!("NV12 {width}x{height}")));
    }
    let (w, h) = (width as usize, height as usize);
    let c = VideoFrame::chroma_len(width, height);
    check(src.len(), w * h + 2 * c, "NV12")?;
    let mut frame = VideoFrame::blank(width, height);
    let (y, u, v) = frame.planes_mut();
    y.copy_from_slice(src.get(..w * h).unwrap_or_default());
    let uv = src.get(w * h..w * h + 2 * c).unwrap_or_default();
    for (i, pair) in uv.chunks_exact(2).enumerate() {
        if let (Some(pu), Some(pv), &[cb, cr]) = (u.get_mut(i), v.get_mut(i), pair) {
            *pu = cb;
            *pv = cr;
        }
    }
    Ok(frame)
}

/// Packed RGB (3 bytes a pixel) → I420 (BT.601, limited range, as the rest of the pipeline).
///
/// # Errors
/// When the buffer is short or a side is zero.
pub fn rgb_to_i420(src: &[u8], width: u32, height: u32) -> Result<VideoFrame, MediaError> {
    if width == 0 || height == 0 {
        return Err(MediaError::InvalidFrame(format!("RGB {width}x{height}")));
    }
    let n = width as usize * height as usize;
    check(src.len(), n * 3, "RGB")?;
    let mut frame = VideoFrame::blank(width, height);
    {
        let mut planar = planar(&mut frame);
        yuv::rgb_to_yuv420(
            &mut planar,
            src.get(..n * 3).unwrap_or_default(),
            width * 3,
            YuvRange::Limited,
            YuvStandardMatrix::Bt601,
            YuvConversionMode::Balanced,
        )
        .map_err(|e| MediaError::InvalidFrame(format!("RGB: {e}")))?;
    }
    Ok(frame)
}

/// MJPEG (one JPEG per frame) → I420. The JPEG is decoded straight to YCbCr (zune-jpeg), not
/// to RGB and back: only the chroma is subsampled (2x2 averages). An odd last row or column
/// is dropped (the encoders want even sizes).
///
/// # Errors
/// When the JPEG does not decode.
pub fn mjpeg_to_i420(src: &[u8]) -> Result<VideoFrame, MediaError> {
    let bad = |e: &dyn std::fmt::Display| MediaError::InvalidFrame(format!("MJPEG: {e}"));
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::YCbCr);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(src), options);
    let ycc = decoder.decode().map_err(|e| bad(&e))?;
    let (w, h) = decoder
        .dimensions()
        .ok_or_else(|| bad(&"no picture size"))?;
    let (ew, eh) = (w & !1, h & !1);
    if ew == 0 || eh == 0 {
        return Err(bad(&format!("{w}x{h}")));
    }
    check(ycc.len(), w * h * 3, "MJPEG")?;
    let width = u32::try_from(ew).map_err(|e| bad(&e))?;
    let height = u32::try_from(eh).map_err(|e| bad(&e))?;
    let mut frame = VideoFrame::blank(width, height);
    let (y, u, v) = frame.planes_mut();
    let px = |row: usize, col: usize| {
        let i = (row * w + col) * 3;
        ycc.get(i..i + 3).unwrap_or(&[16, 128, 128])
    };
    for row in 0..eh {
        for col in 0..ew {
            if let (Some(out), Some(&l)) = (y.get_mut(row * ew + col), px(row, col).first()) {
                *out = l;
            }
        }
    }
    for row in 0..eh / 2 {
        for col in 0..ew / 2 {
            let quad = [
                px(2 * row, 2 * col),
                px(2 * row, 2 * col + 1),
                px(2 * row + 1, 2 * col),
                px(2 * row + 1, 2 * col + 1),
            ];
            let avg = |k: usize| {
                let sum: u16 = quad
                    .iter()
                    .map(|p| u16::from(p.get(k).copied().unwrap_or(128)))
                    .sum();
                ((sum + 2) / 4) as u8
            };
            let ci = row * (ew / 2) + col;
            if let (Some(pu), Some(pv)) = (u.get_mut(ci), v.get_mut(ci)) {
                *pu = avg(1);
                *pv = avg(2);
            }
        }
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::i420_to_rgba;
    use crate::quality::psnr;
    use crate::synthetic::SyntheticCamera;

    fn reference() -> VideoFrame {
        SyntheticCamera::new(64, 32, 30.0).render(3, 0)
    }

    #[test]
    fn nv12_and_yuyv_round_trip() {
        let f = reference();
        let (y, u, v) = f.planes();
        let mut nv12 = y.to_vec();
        nv12.extend(u.iter().zip(v).flat_map(|(a, b)| [*a, *b]));
        assert_eq!(
            nv12_to_i420(&nv12, 64, 32).map(|g| g.data).ok(),
            Some(f.data.clone())
        );
        // YUYV from the same picture (chroma repeated on both lines of a pair).
        let mut yuyv = Vec::new();
        for row in 0..32 {
            for i in 0..32 {
                let ci = (row / 2) * 32 + i;
                yuyv.extend([y[row * 64 + 2 * i], u[ci], y[row * 64 + 2 * i + 1], v[ci]]);
            }
        }
        assert_eq!(
            yuyv_to_i420(&yuyv, 64, 32).map(|g| g.data).ok(),
            Some(f.data.clone())
        );
        assert!(yuyv_to_i420(&yuyv[..100], 64, 32).is_err());
        assert!(nv12_to_i420(&nv12, 0, 32).is_err());
    }

    #[test]
    fn mjpeg_and_rgb_decode() {
        let f = SyntheticCamera::new(640, 360, 30.0).render(3, 0);
        let rgba = i420_to_rgba(&f).unwrap_or_default();
        let rgb: Vec<u8> = rgba
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        let from_rgb = rgb_to_i420(&rgb, 640, 360);
        assert!(from_rgb.as_ref().map(|g| psnr(&f, g)).unwrap_or_default() > 35.0);
        let mut jpeg = Vec::new();
        let img = image::RgbImage::from_raw(640, 360, rgb).unwrap_or_default();
        assert!(
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
                .encode_image(&img)
                .is_ok()
        );
        let decoded = mjpeg_to_i420(&jpeg);
        let p = decoded.as_ref().map(|g| psnr(&f, g)).unwrap_or_default();
        assert!(p > 30.0, "MJPEG PSNR {p:.1}");
        assert!(mjpeg_to_i420(b"not a jpeg").is_err());
    }
}
