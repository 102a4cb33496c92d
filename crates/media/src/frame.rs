//! Frame types.

use crate::MediaError;

/// Audio runs at 48 kHz everywhere inside LiveLoop.
pub const SAMPLE_RATE: u32 = 48_000;

/// A video frame in I420 (planar Y, then U and V at half resolution), tightly packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    pub width: u32,
    pub height: u32,
    /// Y (`width*height`), U and V (`((width+1)/2)*((height+1)/2)` each).
    pub data: Vec<u8>,
    /// Capture time, microseconds on the capturing clock.
    pub capture_us: u64,
    /// Position in its stream, from 0.
    pub number: u64,
}

impl VideoFrame {
    /// Bytes of one chroma plane.
    #[must_use]
    pub const fn chroma_len(width: u32, height: u32) -> usize {
        (width.div_ceil(2) as usize) * (height.div_ceil(2) as usize)
    }

    /// Bytes of a whole I420 frame.
    #[must_use]
    pub const fn i420_len(width: u32, height: u32) -> usize {
        (width as usize) * (height as usize) + 2 * Self::chroma_len(width, height)
    }

    /// A mid-grey frame.
    #[must_use]
    pub fn blank(width: u32, height: u32) -> Self {
        let y = (width as usize) * (height as usize);
        let mut data = vec![128u8; Self::i420_len(width, height)];
        data.get_mut(..y)
            .into_iter()
            .flatten()
            .for_each(|p| *p = 16);
        Self {
            width,
            height,
            data,
            capture_us: 0,
            number: 0,
        }
    }

    /// Wraps I420 bytes, checking the length.
    ///
    /// # Errors
    /// [`MediaError::InvalidFrame`] when `data` is not exactly one I420 frame, or a side is 0.
    pub fn from_i420(width: u32, height: u32, data: Vec<u8>) -> Result<Self, MediaError> {
        if width == 0 || height == 0 || data.len() != Self::i420_len(width, height) {
            return Err(MediaError::InvalidFrame(format!(
                "{} bytes is not an I420 frame of {width}x{height}",
                data.len()
            )));
        }
        Ok(Self {
            width,
            height,
            data,
            capture_us: 0,
            number: 0,
        })
    }

    /// The three planes (Y, U, V).
    #[must_use]
    pub fn planes(&self) -> (&[u8], &[u8], &[u8]) {
        let y = (self.width as usize) * (self.height as usize);
        let c = Self::chroma_len(self.width, self.height);
        let (luma, chroma) = self.data.split_at(y.min(self.data.len()));
        let (u, v) = chroma.split_at(c.min(chroma.len()));
        (luma, u, v)
    }

    /// The three planes, mutable.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let y = (self.width as usize) * (self.height as usize);
        let c = Self::chroma_len(self.width, self.height);
        let len = self.data.len();
        let (luma, chroma) = self.data.split_at_mut(y.min(len));
        let (u, v) = chroma.split_at_mut(c.min(chroma.len()));
        (luma, u, v)
    }
}

/// A block of 48 kHz mono audio.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioFrame {
    pub samples: Vec<f32>,
    /// Capture time of the first sample, microseconds on the capturing clock.
    pub capture_us: u64,
    /// Index of the first sample in its stream.
    pub first_sample: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_planes() {
        assert_eq!(VideoFrame::i420_len(1280, 720), 1280 * 720 * 3 / 2);
        assert_eq!(VideoFrame::i420_len(3, 3), 9 + 2 * 4);
        let f = VideoFrame::blank(4, 2);
        let (y, u, v) = f.planes();
        assert_eq!((y.len(), u.len(), v.len()), (8, 2, 2));
        assert!(VideoFrame::from_i420(4, 2, vec![0; 11]).is_err());
        assert!(VideoFrame::from_i420(0, 2, vec![]).is_err());
    }
}
