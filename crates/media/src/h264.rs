//! H.264 via openh264: constrained baseline, Annex-B output, bitrate and frame rate changeable
//! while running, keyframes on demand. RTP packetization (mode 1: FU-A/STAP-A) is the
//! transport's job; the encoder emits plain NAL units.

use openh264::OpenH264API;
use openh264::decoder::{Decoder, DecoderConfig};
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, Profile, RateControlMode, UsageType,
};
use openh264::formats::{YUVSlices, YUVSource};

use crate::{MediaError, VideoFrame};

/// Encoder settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct H264Config {
    pub bitrate_bps: u32,
    pub fps: f32,
}

/// One encoded picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// Annex-B NAL units (start codes included).
    pub data: Vec<u8>,
    pub keyframe: bool,
    pub number: u64,
    pub capture_us: u64,
}

/// The H.264 encoder. Not `Sync`-shared: run it on one codec thread.
pub struct H264Encoder {
    encoder: Encoder,
    config: H264Config,
    started: bool,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl H264Encoder {
    /// # Errors
    /// When openh264 cannot be initialised.
    pub fn new(config: H264Config) -> Result<Self, MediaError> {
        let oh = EncoderConfig::new()
            .bitrate(BitRate::from_bps(config.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(config.fps))
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .profile(Profile::Baseline)
            .skip_frames(false)
            .scene_change_detect(false)
            .num_threads(1);
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), oh)
            .map_err(|e| MediaError::codec("H.264 encoder", e))?;
        Ok(Self {
            encoder,
            config,
            started: false,
        })
    }

    #[must_use]
    pub fn config(&self) -> H264Config {
        self.config
    }

    /// Encodes one frame. Frame size may change between calls (the encoder restarts with a
    /// keyframe).
    ///
    /// # Errors
    /// When the frame is inconsistent or openh264 fails.
    pub fn encode(&mut self, frame: &VideoFrame) -> Result<EncodedFrame, MediaError> {
        if frame.data.len() != VideoFrame::i420_len(frame.width, frame.height)
            || frame.width % 2 == 1
            || frame.height % 2 == 1
        {
            return Err(MediaError::InvalidFrame(format!(
                "{}x{} with {} bytes (even sizes only)",
                frame.width,
                frame.height,
                frame.data.len()
            )));
        }
        let (y, u, v) = frame.planes();
        let (w, h) = (frame.width as usize, frame.height as usize);
        let slices = YUVSlices::new((y, u, v), (w, h), (w, w / 2, w / 2));
        let stream = self
            .encoder
            .encode(&slices)
            .map_err(|e| MediaError::codec("H.264 encoder", e))?;
        let keyframe = matches!(stream.frame_type(), FrameType::IDR | FrameType::I);
        let data = stream.to_vec();
        self.started = true;
        Ok(EncodedFrame {
            data,
            keyframe,
            number: frame.number,
            capture_us: frame.capture_us,
        })
    }

    /// The next frame will be an IDR (a PLI or FIR arrived, or a new receiver joined).
    pub fn request_keyframe(&mut self) {
        self.encoder.force_intra_frame();
    }

    /// Changes the target bitrate from the next frame on.
    ///
    /// # Errors
    /// When openh264 refuses the value.
    pub fn set_bitrate(&mut self, bps: u32) -> Result<(), MediaError> {
        let rising = bps > self.config.bitrate_bps;
        self.config.bitrate_bps = bps;
        if !self.started {
            return self.rebuild();
        }
        let bitrate = i32::try_from(bps).unwrap_or(i32::MAX);
        // The openh264 crate caps the layer's bitrate at the rate the encoder started with, and
        // openh264 refuses a target above the cap or a cap below the target: the cap moves
        // with the target, before it on the way up and after it on the way down.
        let mut cap = openh264_sys2::SBitrateInfo {
            iLayer: openh264_sys2::SPATIAL_LAYER_0,
            iBitrate: bitrate,
        };
        let mut target = openh264_sys2::SBitrateInfo {
            iLayer: openh264_sys2::SPATIAL_LAYER_ALL,
            iBitrate: bitrate,
        };
        let mut steps = [
            (openh264_sys2::ENCODER_OPTION_MAX_BITRATE, &mut cap, "cap"),
            (
                openh264_sys2::ENCODER_OPTION_BITRATE,
                &mut target,
                "bitrate",
            ),
        ];
        if !rising {
            steps.reverse();
        }
        for (option, info, what) in steps {
            // SAFETY: the encoder is initialised (a frame was encoded); both options take a
            // pointer to an SBitrateInfo, which lives on this stack frame for the whole call.
            #[allow(unsafe_code)]
            let rc = unsafe {
                self.encoder
                    .raw_api()
                    .set_option(option, std::ptr::from_mut(info).cast())
            };
            if rc != 0 {
                return Err(MediaError::codec(
                    "H.264 encoder",
                    format!("{what} {bps} refused ({rc})"),
                ));
            }
        }
        Ok(())
    }

    /// Changes the target frame rate from the next frame on.
    ///
    /// # Errors
    /// When openh264 refuses the value.
    pub fn set_frame_rate(&mut self, fps: f32) -> Result<(), MediaError> {
        self.config.fps = fps;
        if !self.started {
            return self.rebuild();
        }
        let mut rate = fps;
        // SAFETY: the encoder is initialised; ENCODER_OPTION_FRAME_RATE takes a pointer to a
        // float, which lives on this stack frame for the whole call.
        #[allow(unsafe_code)]
        let rc = unsafe {
            self.encoder.raw_api().set_option(
                openh264_sys2::ENCODER_OPTION_FRAME_RATE,
                std::ptr::addr_of_mut!(rate).cast(),
            )
        };
        if rc != 0 {
            return Err(MediaError::codec(
                "H.264 encoder",
                format!("frame rate {fps} refused ({rc})"),
            ));
        }
        Ok(())
    }

    fn rebuild(&mut self) -> Result<(), MediaError> {
        *self = Self::new(self.config)?;
        Ok(())
    }
}

/// The H.264 decoder.
pub struct H264Decoder {
    decoder: Decoder,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Decoder").finish_non_exhaustive()
    }
}

impl H264Decoder {
    /// # Errors
    /// When openh264 cannot be initialised.
    pub fn new() -> Result<Self, MediaError> {
        let decoder = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
            .map_err(|e| MediaError::codec("H.264 decoder", e))?;
        Ok(Self { decoder })
    }

    /// Decodes one access unit (Annex-B). `None` while the decoder has no picture to show yet.
    ///
    /// # Errors
    /// On a corrupt bitstream; the caller should request a keyframe.
    pub fn decode(&mut self, annex_b: &[u8]) -> Result<Option<VideoFrame>, MediaError> {
        let Some(yuv) = self
            .decoder
            .decode(annex_b)
            .map_err(|e| MediaError::codec("H.264 decoder", e))?
        else {
            return Ok(None);
        };
        let (w, h) = yuv.dimensions();
        let (sy, su, sv) = yuv.strides();
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let mut data = Vec::with_capacity(w * h + 2 * cw * ch);
        for (plane, stride, pw, ph) in [
            (yuv.y(), sy, w, h),
            (yuv.u(), su, cw, ch),
            (yuv.v(), sv, cw, ch),
        ] {
            for row in 0..ph {
                let line = plane
                    .get(row * stride..row * stride + pw)
                    .ok_or_else(|| MediaError::codec("H.264 decoder", "short plane"))?;
                data.extend_from_slice(line);
            }
        }
        let width = u32::try_from(w).map_err(|e| MediaError::codec("H.264 decoder", e))?;
        let height = u32::try_from(h).map_err(|e| MediaError::codec("H.264 decoder", e))?;
        VideoFrame::from_i420(width, height, data).map(Some)
    }
}
