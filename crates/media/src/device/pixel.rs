//! Camera pixel formats to I420: YUYV (4:2:2 packed), NV12 (4:2:0 semi-planar), MJPEG, RGB.

use crate::convert::rgba_to_i420;
use crate::{MediaError, VideoFrame};

fn check(len: usize, need: usize, what: &str) -> Result<(), MediaError> {
    if len < need {
        return Err(MediaError::InvalidFrame(format!(
            "{what}: {len} bytes, need {need}"
        )));
    }
    Ok(())
}

/// YUYV (Y0 U Y1 V per two pixels) → I420, averaging chroma of line pairs.
///
/// # Errors
/// When the buffer is short or a side is odd or zero.
pub fn yuyv_to_i420(src: &[u8], width: u32, height: u32) -> Result<VideoFrame, MediaError> {
    if width == 0 || height == 0 || width % 2 == 1 || height % 2 == 1 {
        return Err(MediaError::InvalidFrame(format!("YUYV {width}x{height}")));
    }
    let (w, h) = (width as usize, height as usize);
    check(src.len(), w * h * 2, "YUYV")?;
    let mut frame = VideoFrame::blank(width, height);
    let (y, u, v) = frame.planes_mut();
    for row in 0..h {
        let line = src.get(row * w * 2..(row + 1) * w * 2).unwrap_or_default();
        for (i, px) in line.chunks_exact(4).enumerate() {
            if let [y0, cb, y1, cr] = *px {
                if let Some(out) = y.get_mut(row * w + 2 * i..row * w + 2 * i + 2) {
                    out.copy_from_slice(&[y0, y1]);
                }
                let ci = (row / 2) * (w / 2) + i;
                if let (Some(pu), Some(pv)) = (u.get_mut(ci), v.get_mut(ci)) {
                    if row % 2 == 0 {
                        *pu = cb;
                        *pv = cr;
                    } else {
                        *pu = ((u16::from(*pu) + u16::from(cb)) / 2) as u8;
                        *pv = ((u16::from(*pv) + u16::from(cr)) / 2) as u8;
                    }
                }
            }
        }
    }
    Ok(frame)
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

/// Packed RGB (3 bytes a pixel) → I420.
///
/// # Errors
/// When the buffer is short.
pub fn rgb_to_i420(src: &[u8], width: u32, height: u32) -> Result<VideoFrame, MediaError> {
    let n = width as usize * height as usize;
    check(src.len(), n * 3, "RGB")?;
    let rgba: Vec<u8> = src
        .chunks_exact(3)
        .take(n)
        .flat_map(|p| match *p {
            [r, g, b] => [r, g, b, 255],
            _ => [0, 0, 0, 255],
        })
        .collect();
    rgba_to_i420(&rgba, width, height)
}

/// MJPEG (one JPEG per frame) → I420.
///
/// # Errors
/// When the JPEG does not decode.
pub fn mjpeg_to_i420(src: &[u8]) -> Result<VideoFrame, MediaError> {
    let img = image::load_from_memory_with_format(src, image::ImageFormat::Jpeg)
        .map_err(|e| MediaError::InvalidFrame(format!("MJPEG: {e}")))?
        .into_rgba8();
    let (w, h) = img.dimensions();
    // H.264 wants even sizes: drop an odd last row or column.
    let (ew, eh) = (w & !1, h & !1);
    let rgba = if (ew, eh) == (w, h) {
        img.into_raw()
    } else {
        image::imageops::crop_imm(&img, 0, 0, ew, eh)
            .to_image()
            .into_raw()
    };
    rgba_to_i420(&rgba, ew, eh)
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
