//! VP8 via the system's libvpx: the codec every WebRTC browser has, for the peers that have
//! no H.264 (Firefox as Debian and many Linux distributions ship it, without OpenH264).
//! Real-time one-pass CBR, no lag, keyframes on demand, bitrate changeable while running;
//! the same shape as [`crate::h264`], so the engine treats both alike. RTP packetization
//! (RFC 7741) is the transport's job.
//!
//! No Rust VP8 encoder exists, and the `vpx-encode` crate has neither keyframe requests nor
//! a decoder, so this is a small wrapper over `env-libvpx-sys`'s bindings. Every `unsafe`
//! block says which libvpx contract it relies on.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::os::raw::c_int;
use std::ptr;

use vpx_sys::{
    VPX_DECODER_ABI_VERSION, VPX_DL_REALTIME, VPX_EFLAG_FORCE_KF, VPX_ENCODER_ABI_VERSION,
    VPX_FRAME_IS_KEY, vp8e_enc_control_id, vpx_codec_ctx_t, vpx_codec_cx_pkt_kind,
    vpx_codec_enc_cfg_t, vpx_codec_err_t, vpx_image_t, vpx_img_fmt, vpx_kf_mode, vpx_rc_mode,
};

use crate::h264::{EncodedFrame, H264Config};
use crate::{MediaError, VideoFrame};

/// Encoder settings (the same as H.264's: a bitrate and a frame rate).
pub type Vp8Config = H264Config;

/// The 90 kHz RTP clock as the encoder's time base, so that pts are RTP-like.
const TIMEBASE_HZ: u32 = 90_000;

fn error_text(err: vpx_codec_err_t) -> String {
    // SAFETY: vpx_codec_err_to_string returns a pointer to a static, NUL-terminated string
    // for every error value (an "Unrecognized error code" string for unknown ones).
    let text = unsafe { CStr::from_ptr(vpx_sys::vpx_codec_err_to_string(err)) };
    text.to_string_lossy().into_owned()
}

fn check(what: &'static str, err: vpx_codec_err_t) -> Result<(), MediaError> {
    if err == vpx_codec_err_t::VPX_CODEC_OK {
        Ok(())
    } else {
        Err(MediaError::codec(what, error_text(err)))
    }
}

/// An initialised libvpx context, destroyed on drop.
struct Context {
    ctx: Box<vpx_codec_ctx_t>,
}

// SAFETY: a libvpx context has no thread affinity; it is used by one thread at a time (the
// wrappers take `&mut self`), which is all libvpx requires.
unsafe impl Send for Context {}

impl Context {
    fn zeroed() -> Box<vpx_codec_ctx_t> {
        // SAFETY: vpx_codec_ctx_t is a plain C struct of pointers and integers; all zeroes is
        // the state libvpx expects before an init call.
        Box::new(unsafe { std::mem::zeroed() })
    }

    fn raw(&mut self) -> *mut vpx_codec_ctx_t {
        &raw mut *self.ctx
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the context was initialised (a Context exists only after a successful init)
        // and is destroyed exactly once, here.
        unsafe {
            vpx_sys::vpx_codec_destroy(self.raw());
        }
    }
}

/// The VP8 encoder. Run it on one codec thread.
pub struct Vp8Encoder {
    context: Option<Context>,
    cfg: vpx_codec_enc_cfg_t,
    config: Vp8Config,
    size: (u32, u32),
    pts: i64,
    force_keyframe: bool,
}

// SAFETY: see `Context`; the config is plain data.
unsafe impl Send for Vp8Encoder {}

impl std::fmt::Debug for Vp8Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vp8Encoder")
            .field("config", &self.config)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Vp8Encoder {
    /// # Errors
    /// When libvpx has no VP8 encoder or refuses the settings.
    pub fn new(config: Vp8Config) -> Result<Self, MediaError> {
        let mut cfg = std::mem::MaybeUninit::<vpx_codec_enc_cfg_t>::uninit();
        // SAFETY: the interface pointer is libvpx's static VP8 encoder; cfg is valid for writes;
        // usage 0 is the only usage VP8 defines.
        let err = unsafe {
            vpx_sys::vpx_codec_enc_config_default(vpx_sys::vpx_codec_vp8_cx(), cfg.as_mut_ptr(), 0)
        };
        check("VP8 encoder", err)?;
        // SAFETY: on success vpx_codec_enc_config_default wrote a whole configuration.
        let cfg = unsafe { cfg.assume_init() };
        Ok(Self {
            context: None,
            cfg,
            config,
            size: (0, 0),
            pts: 0,
            force_keyframe: true,
        })
    }

    #[must_use]
    pub fn config(&self) -> Vp8Config {
        self.config
    }

    /// The real-time settings, as browsers use them: one pass, CBR, no look-ahead, error
    /// resilient, one thread, keyframes only when asked for (and at most every 100 s).
    fn configure(&mut self, width: u32, height: u32) {
        let cfg = &mut self.cfg;
        cfg.g_w = width;
        cfg.g_h = height;
        cfg.g_threads = 1;
        cfg.g_timebase.num = 1;
        cfg.g_timebase.den = TIMEBASE_HZ as c_int;
        cfg.g_lag_in_frames = 0;
        cfg.g_error_resilient = 1;
        cfg.rc_end_usage = vpx_rc_mode::VPX_CBR;
        cfg.rc_target_bitrate = (self.config.bitrate_bps / 1000).max(1);
        cfg.rc_min_quantizer = 2;
        cfg.rc_max_quantizer = 56;
        cfg.rc_undershoot_pct = 100;
        cfg.rc_overshoot_pct = 15;
        cfg.rc_buf_sz = 1000;
        cfg.rc_buf_initial_sz = 500;
        cfg.rc_buf_optimal_sz = 600;
        cfg.rc_dropframe_thresh = 0;
        cfg.kf_mode = vpx_kf_mode::VPX_KF_AUTO;
        cfg.kf_min_dist = 0;
        cfg.kf_max_dist = (self.config.fps.max(1.0) * 100.0) as u32;
    }

    fn start(&mut self, width: u32, height: u32) -> Result<(), MediaError> {
        self.context = None;
        self.configure(width, height);
        let mut ctx = Context::zeroed();
        // SAFETY: ctx is zeroed and lives in a Box (its address is stable for the context's
        // life); cfg was filled by vpx_codec_enc_config_default and adjusted above; the ABI
        // version is the one of the headers the bindings were generated from.
        let err = unsafe {
            vpx_sys::vpx_codec_enc_init_ver(
                &raw mut *ctx,
                vpx_sys::vpx_codec_vp8_cx(),
                &raw const self.cfg,
                0,
                VPX_ENCODER_ABI_VERSION as c_int,
            )
        };
        check("VP8 encoder", err)?;
        let mut context = Context { ctx };
        // Speed: -6 is what WebRTC uses for VP8 on a desktop CPU in real time (negative:
        // "real time, this many steps faster"); the static threshold skips still blocks.
        for (id, value) in [
            (vp8e_enc_control_id::VP8E_SET_CPUUSED, -6),
            (vp8e_enc_control_id::VP8E_SET_STATIC_THRESHOLD, 1),
            (vp8e_enc_control_id::VP8E_SET_NOISE_SENSITIVITY, 0),
        ] {
            // SAFETY: the context is initialised; these controls take one int argument.
            let err =
                unsafe { vpx_sys::vpx_codec_control_(context.raw(), id as c_int, value as c_int) };
            check("VP8 encoder", err)?;
        }
        self.context = Some(context);
        self.size = (width, height);
        self.force_keyframe = true;
        Ok(())
    }

    /// Encodes one frame. Frame size may change between calls (the encoder restarts with a
    /// keyframe). The output is empty when the rate control dropped the frame.
    ///
    /// # Errors
    /// When the frame is inconsistent or libvpx fails.
    pub fn encode(&mut self, frame: &VideoFrame) -> Result<EncodedFrame, MediaError> {
        if frame.data.len() != VideoFrame::i420_len(frame.width, frame.height)
            || frame.width % 2 == 1
            || frame.height % 2 == 1
            || frame.width == 0
            || frame.height == 0
        {
            return Err(MediaError::InvalidFrame(format!(
                "{}x{} with {} bytes (even, non-zero sizes only)",
                frame.width,
                frame.height,
                frame.data.len()
            )));
        }
        if self.context.is_none() || self.size != (frame.width, frame.height) {
            self.start(frame.width, frame.height)?;
        }
        let duration = (f64::from(TIMEBASE_HZ) / f64::from(self.config.fps.max(1.0))) as u64;
        let flags = if std::mem::take(&mut self.force_keyframe) {
            VPX_EFLAG_FORCE_KF as i64
        } else {
            0
        };
        let mut image = std::mem::MaybeUninit::<vpx_image_t>::uninit();
        // SAFETY: `frame.data` holds a whole I420 picture of this size (checked above), with
        // the chroma planes right after the luma plane, which is what vpx_img_wrap with
        // alignment 1 describes. libvpx only reads through the pointer (the encoder copies the
        // picture before vpx_codec_encode returns), so casting away const is sound, and the
        // data outlives the call.
        let wrapped = unsafe {
            vpx_sys::vpx_img_wrap(
                image.as_mut_ptr(),
                vpx_img_fmt::VPX_IMG_FMT_I420,
                frame.width,
                frame.height,
                1,
                frame.data.as_ptr().cast_mut(),
            )
        };
        if wrapped.is_null() {
            return Err(MediaError::codec(
                "VP8 encoder",
                "cannot describe the frame",
            ));
        }
        // SAFETY: a non-null result means vpx_img_wrap filled in the whole descriptor.
        let image = unsafe { image.assume_init() };
        let Some(context) = self.context.as_mut() else {
            return Err(MediaError::codec("VP8 encoder", "not started"));
        };
        // SAFETY: the context is initialised and sized for this frame; `image` describes
        // memory that stays valid for the call; pts and duration are in the time base.
        let err = unsafe {
            vpx_sys::vpx_codec_encode(
                context.raw(),
                &raw const image,
                self.pts,
                duration as _,
                flags as _,
                VPX_DL_REALTIME as _,
            )
        };
        check("VP8 encoder", err)?;
        self.pts += duration as i64;
        let mut data = Vec::new();
        let mut keyframe = false;
        let mut iter: vpx_sys::vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: the context is initialised; `iter` starts null and is only advanced by
            // libvpx; the packet it returns stays valid until the next call on this context.
            let pkt = unsafe { vpx_sys::vpx_codec_get_cx_data(context.raw(), &raw mut iter) };
            // SAFETY: a non-null packet points to a valid vpx_codec_cx_pkt_t (see above).
            let Some(pkt) = (unsafe { pkt.as_ref() }) else {
                break;
            };
            if pkt.kind != vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                continue;
            }
            // SAFETY: for a frame packet the `frame` member of the union is the valid one, and
            // its buffer holds `sz` bytes owned by the context until the next call.
            let bytes = unsafe {
                let f = &pkt.data.frame;
                keyframe |= f.flags & VPX_FRAME_IS_KEY != 0;
                std::slice::from_raw_parts(f.buf.cast::<u8>(), f.sz)
            };
            data.extend_from_slice(bytes);
        }
        Ok(EncodedFrame {
            data,
            keyframe,
            number: frame.number,
            capture_us: frame.capture_us,
        })
    }

    /// The next frame will be a keyframe (a PLI or FIR arrived, or a new receiver joined).
    pub fn request_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    /// Changes the target bitrate from the next frame on.
    ///
    /// # Errors
    /// When libvpx refuses the value.
    pub fn set_bitrate(&mut self, bps: u32) -> Result<(), MediaError> {
        self.config.bitrate_bps = bps;
        self.cfg.rc_target_bitrate = (bps / 1000).max(1);
        let Some(context) = self.context.as_mut() else {
            return Ok(()); // taken at the first frame
        };
        // SAFETY: the context is initialised; cfg is a complete configuration of this size.
        let err = unsafe { vpx_sys::vpx_codec_enc_config_set(context.raw(), &raw const self.cfg) };
        check("VP8 encoder", err)
    }
}

/// The VP8 decoder.
pub struct Vp8Decoder {
    context: Context,
}

// SAFETY: see `Context`.
unsafe impl Send for Vp8Decoder {}

impl std::fmt::Debug for Vp8Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vp8Decoder").finish_non_exhaustive()
    }
}

impl Vp8Decoder {
    /// # Errors
    /// When libvpx has no VP8 decoder.
    pub fn new() -> Result<Self, MediaError> {
        let mut ctx = Context::zeroed();
        let cfg = vpx_sys::vpx_codec_dec_cfg_t {
            threads: 1,
            w: 0,
            h: 0,
        };
        // SAFETY: ctx is zeroed and boxed (stable address); cfg lives for the call (libvpx
        // copies it); the ABI version matches the headers of the bindings.
        let err = unsafe {
            vpx_sys::vpx_codec_dec_init_ver(
                &raw mut *ctx,
                vpx_sys::vpx_codec_vp8_dx(),
                &raw const cfg,
                0,
                VPX_DECODER_ABI_VERSION as c_int,
            )
        };
        check("VP8 decoder", err)?;
        Ok(Self {
            context: Context { ctx },
        })
    }

    /// Decodes one frame. `None` when the data held no picture to show.
    ///
    /// # Errors
    /// On a corrupt bitstream; the caller should request a keyframe.
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<VideoFrame>, MediaError> {
        if data.is_empty() {
            return Ok(None);
        }
        let len = u32::try_from(data.len())
            .map_err(|_| MediaError::codec("VP8 decoder", "frame too large"))?;
        // SAFETY: the context is initialised; `data` is valid for `len` bytes and only read;
        // libvpx does not keep the pointer after the call (no frame-parallel mode).
        let err = unsafe {
            vpx_sys::vpx_codec_decode(self.context.raw(), data.as_ptr(), len, ptr::null_mut(), 0)
        };
        check("VP8 decoder", err)?;
        let mut out = None;
        let mut iter: vpx_sys::vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: as for the encoder's packets: the image stays valid until the next
            // decode call on this context.
            let image = unsafe { vpx_sys::vpx_codec_get_frame(self.context.raw(), &raw mut iter) };
            // SAFETY: non-null means a valid image.
            let Some(image) = (unsafe { image.as_ref() }) else {
                break;
            };
            out = Some(copy_i420(image)?);
        }
        Ok(out)
    }
}

/// Copies a decoded picture (I420, any strides) into a packed [`VideoFrame`].
fn copy_i420(image: &vpx_image_t) -> Result<VideoFrame, MediaError> {
    if image.fmt != vpx_img_fmt::VPX_IMG_FMT_I420 {
        return Err(MediaError::codec(
            "VP8 decoder",
            format!("unexpected picture format {:?}", image.fmt),
        ));
    }
    // Odd sizes are rounded down to even ones: every frame in the pipeline is even-sized.
    let (w, h) = ((image.d_w & !1) as usize, (image.d_h & !1) as usize);
    if w == 0 || h == 0 {
        return Err(MediaError::codec("VP8 decoder", "empty picture"));
    }
    let mut data = Vec::with_capacity(w * h * 3 / 2);
    let sizes = [(w, h), (w / 2, h / 2), (w / 2, h / 2)];
    for ((&base, &stride), (pw, ph)) in image.planes.iter().zip(&image.stride).zip(sizes) {
        let stride = usize::try_from(stride)
            .map_err(|_| MediaError::codec("VP8 decoder", "negative stride"))?;
        if base.is_null() || stride < pw {
            return Err(MediaError::codec("VP8 decoder", "bad plane"));
        }
        for row in 0..ph {
            // SAFETY: libvpx's decoded image has `ph` rows of `stride` bytes in each plane,
            // of which the first `pw` are picture (d_w/d_h describe the displayed size, never
            // more than the allocated one).
            let line = unsafe { std::slice::from_raw_parts(base.add(row * stride), pw) };
            data.extend_from_slice(line);
        }
    }
    let width = u32::try_from(w).map_err(|e| MediaError::codec("VP8 decoder", e))?;
    let height = u32::try_from(h).map_err(|e| MediaError::codec("VP8 decoder", e))?;
    VideoFrame::from_i420(width, height, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(width: u32, height: u32, n: u64) -> VideoFrame {
        let mut f = VideoFrame::blank(width, height);
        // A moving gradient, so that inter frames have something to code.
        let (y, _, _) = f.planes_mut();
        for (i, p) in y.iter_mut().enumerate() {
            *p = ((i as u64 + n * 3) % 251) as u8;
        }
        f.number = n;
        f
    }

    #[test]
    fn encodes_and_decodes_frames_with_keyframes_on_request() {
        let mut enc = Vp8Encoder::new(Vp8Config {
            bitrate_bps: 800_000,
            fps: 30.0,
        })
        .unwrap();
        let mut dec = Vp8Decoder::new().unwrap();
        let mut keyframes = Vec::new();
        let mut decoded = 0;
        for n in 0..30 {
            if n == 20 {
                enc.request_keyframe();
            }
            let au = enc.encode(&frame(320, 180, n)).unwrap();
            if au.keyframe {
                keyframes.push(n);
            }
            if let Some(f) = dec.decode(&au.data).unwrap() {
                assert_eq!((f.width, f.height), (320, 180));
                decoded += 1;
            }
        }
        assert_eq!(
            keyframes,
            vec![0, 20],
            "keyframes only first and on request"
        );
        assert_eq!(decoded, 30);
    }

    #[test]
    fn a_new_size_restarts_with_a_keyframe_and_bitrate_changes_apply() {
        let mut enc = Vp8Encoder::new(Vp8Config {
            bitrate_bps: 500_000,
            fps: 30.0,
        })
        .unwrap();
        assert!(enc.encode(&frame(320, 180, 0)).unwrap().keyframe);
        assert!(!enc.encode(&frame(320, 180, 1)).unwrap().keyframe);
        enc.set_bitrate(200_000).unwrap();
        assert!(!enc.encode(&frame(320, 180, 2)).unwrap().keyframe);
        assert!(enc.encode(&frame(640, 360, 3)).unwrap().keyframe);
        assert!(enc.encode(&VideoFrame::blank(3, 2)).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        let mut dec = Vp8Decoder::new().unwrap();
        assert!(dec.decode(&[0x9d, 0x01, 0x2a, 0xff, 0xff, 0xff]).is_err());
        assert!(dec.decode(&[]).unwrap().is_none());
        let noise: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let _ = dec.decode(&noise); // an error or nothing, never a crash
    }
}
