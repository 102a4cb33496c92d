//! A Matroska writer for recordings: H.264 video and Opus audio, written so that the file stays
//! playable if the process dies mid-recording.
//!
//! The segment has an unknown size and every cluster (about one second of media) is written
//! whole and flushed before the next starts, so a killed recorder loses at most the cluster in
//! progress. A clean [`MkvWriter::finish`] also fills in the duration (in space reserved at the
//! start). VLC, mpv, ffmpeg and browsers open the result.

use std::io::{Seek, SeekFrom, Write};

use crate::MediaError;

const EBML: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const MUXING_APP: u32 = 0x4D80;
const WRITING_APP: u32 = 0x5741;
const DURATION: u32 = 0x4489;
const TITLE: u32 = 0x7BA9;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const CLUSTER: u32 = 0x1F43_B675;
const CLUSTER_TIMESTAMP: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;
const VOID: u32 = 0xEC;

/// How much media a cluster holds before it is written out.
const CLUSTER_MS: u64 = 1000;
/// Opus encoder delay (the decoder drops this many samples at the start).
const OPUS_PRE_SKIP: u16 = 312;

fn id_bytes(id: u32) -> Vec<u8> {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes.get(skip..).unwrap_or_default().to_vec()
}

/// An EBML size as an 8-byte vint (simple, and always long enough).
fn size_bytes(size: u64) -> [u8; 8] {
    (size | (1 << 56)).to_be_bytes()
}

fn element(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = id_bytes(id);
    out.extend_from_slice(&size_bytes(body.len() as u64));
    out.extend_from_slice(body);
    out
}

fn uint(id: u32, v: u64) -> Vec<u8> {
    element(id, &v.to_be_bytes())
}

fn float(id: u32, v: f64) -> Vec<u8> {
    element(id, &v.to_be_bytes())
}

fn string(id: u32, s: &str) -> Vec<u8> {
    element(id, s.as_bytes())
}

/// The NAL units of an Annex-B access unit (start codes removed).
fn nal_units(annex_b: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= annex_b.len() {
        if annex_b.get(i..i + 3) == Some(&[0, 0, 1]) {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(annex_b.len(), |n| n - 3);
        // A four-byte start code leaves a zero before the next three-byte one.
        while end > s && annex_b.get(end - 1) == Some(&0) && k + 1 < starts.len() {
            end -= 1;
        }
        if let Some(nal) = annex_b.get(s..end)
            && !nal.is_empty()
        {
            out.push(nal);
        }
    }
    out
}

/// `AVCDecoderConfigurationRecord` from the SPS and PPS of a keyframe, or `None` without them.
fn avc_config(annex_b: &[u8]) -> Option<Vec<u8>> {
    let nals = nal_units(annex_b);
    let sps = nals
        .iter()
        .find(|n| n.first().is_some_and(|b| b & 0x1f == 7))?;
    let pps = nals
        .iter()
        .find(|n| n.first().is_some_and(|b| b & 0x1f == 8))?;
    let mut c = vec![1, *sps.get(1)?, *sps.get(2)?, *sps.get(3)?, 0xFF, 0xE1];
    c.extend_from_slice(&u16::try_from(sps.len()).ok()?.to_be_bytes());
    c.extend_from_slice(sps);
    c.push(1);
    c.extend_from_slice(&u16::try_from(pps.len()).ok()?.to_be_bytes());
    c.extend_from_slice(pps);
    Some(c)
}

/// Annex-B → four-byte length prefixes, as Matroska's AVC codec wants.
fn length_prefixed(annex_b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(annex_b.len() + 16);
    for nal in nal_units(annex_b) {
        out.extend_from_slice(&u32::try_from(nal.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

fn opus_head() -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.push(1); // version
    h.push(1); // channels
    h.extend_from_slice(&OPUS_PRE_SKIP.to_le_bytes());
    h.extend_from_slice(&48_000u32.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes()); // output gain
    h.push(0); // mapping family
    h
}

/// What one recording holds: a video track (track 1) and any number of audio tracks (the mix
/// first, then one per participant when asked for).
#[derive(Debug, Clone)]
pub struct MkvLayout {
    pub width: u32,
    pub height: u32,
    pub title: String,
    /// Names of the audio tracks, in track order (2, 3, …).
    pub audio_tracks: Vec<String>,
}

/// Writes one Matroska file. Blocks must come in time order (per track and overall).
#[derive(Debug)]
pub struct MkvWriter<W: Write + Seek> {
    out: W,
    layout: MkvLayout,
    /// Where the reserved duration space starts, once the header is written.
    duration_at: Option<u64>,
    /// Audio that came before the first keyframe (the header needs its SPS/PPS).
    early: Vec<(u64, u64, Vec<u8>)>,
    cluster: Vec<u8>,
    cluster_start: Option<u64>,
    last_ms: u64,
}

impl<W: Write + Seek> MkvWriter<W> {
    /// Starts a file; nothing is written until the first video keyframe.
    pub fn new(out: W, layout: MkvLayout) -> Self {
        Self {
            out,
            layout,
            duration_at: None,
            early: Vec::new(),
            cluster: Vec::new(),
            cluster_start: None,
            last_ms: 0,
        }
    }

    fn io(e: std::io::Error) -> MediaError {
        MediaError::Write(e.to_string())
    }

    fn write_header(&mut self, avcc: &[u8]) -> Result<(), MediaError> {
        let mut head = element(
            EBML,
            &[
                uint(0x4286, 1),
                uint(0x42F7, 1),
                uint(0x42F2, 4),
                uint(0x42F3, 8),
                string(0x4282, "matroska"),
                uint(0x4287, 4),
                uint(0x4285, 2),
            ]
            .concat(),
        );
        head.extend_from_slice(&id_bytes(SEGMENT));
        head.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]); // unknown size
        let version = concat!("LiveLoop ", env!("CARGO_PKG_VERSION"));
        let info_body = [
            uint(TIMESTAMP_SCALE, 1_000_000),
            string(MUXING_APP, version),
            string(WRITING_APP, version),
            string(TITLE, &self.layout.title),
        ]
        .concat();
        // Room for the duration (2-byte id + 8-byte size + 8-byte float), filled in at the end.
        let reserved = element(VOID, &[0u8; 18 - 9]);
        let info = element(INFO, &[info_body, reserved.clone()].concat());
        let duration_offset = head.len() + info.len() - reserved.len();
        head.extend_from_slice(&info);
        let mut tracks = Vec::new();
        let video = [
            uint(0xD7, 1),
            uint(0x73C5, 1),
            uint(0x83, 1),
            uint(0x9C, 0),
            string(0x86, "V_MPEG4/ISO/AVC"),
            element(0x63A2, avcc),
            string(0x536E, "Call"),
            element(
                0xE0,
                &[
                    uint(0xB0, u64::from(self.layout.width)),
                    uint(0xBA, u64::from(self.layout.height)),
                ]
                .concat(),
            ),
        ]
        .concat();
        tracks.extend_from_slice(&element(TRACK_ENTRY, &video));
        for (i, name) in self.layout.audio_tracks.iter().enumerate() {
            let n = i as u64 + 2;
            let audio = [
                uint(0xD7, n),
                uint(0x73C5, n),
                uint(0x83, 2),
                uint(0x9C, 0),
                uint(0x88, u64::from(i == 0)), // FlagDefault: the mix plays by default
                string(0x86, "A_OPUS"),
                element(0x63A2, &opus_head()),
                uint(0x56AA, u64::from(OPUS_PRE_SKIP) * 1_000_000_000 / 48_000),
                uint(0x56BB, 80_000_000),
                string(0x536E, name),
                element(0xE1, &[float(0xB5, 48_000.0), uint(0x9F, 1)].concat()),
            ]
            .concat();
            tracks.extend_from_slice(&element(TRACK_ENTRY, &audio));
        }
        head.extend_from_slice(&element(TRACKS, &tracks));
        let start = self.out.stream_position().map_err(Self::io)?;
        self.out.write_all(&head).map_err(Self::io)?;
        self.out.flush().map_err(Self::io)?;
        self.duration_at = Some(start + duration_offset as u64);
        Ok(())
    }

    fn block(
        &mut self,
        track: u64,
        ms: u64,
        keyframe: bool,
        data: &[u8],
    ) -> Result<(), MediaError> {
        let start = match self.cluster_start {
            Some(s) if ms >= s && ms < s + CLUSTER_MS => s,
            _ => {
                self.flush_cluster()?;
                self.cluster_start = Some(ms);
                ms
            }
        };
        let rel = i16::try_from(ms - start).unwrap_or(i16::MAX);
        let mut body = vec![0x80 | u8::try_from(track).unwrap_or(1)];
        body.extend_from_slice(&rel.to_be_bytes());
        body.push(if keyframe { 0x80 } else { 0 });
        body.extend_from_slice(data);
        self.cluster
            .extend_from_slice(&element(SIMPLE_BLOCK, &body));
        self.last_ms = self.last_ms.max(ms);
        Ok(())
    }

    /// Writes the cluster in progress and flushes the file.
    ///
    /// # Errors
    /// On a write error.
    pub fn flush_cluster(&mut self) -> Result<(), MediaError> {
        if let Some(start) = self.cluster_start.take()
            && !self.cluster.is_empty()
        {
            let body = [
                uint(CLUSTER_TIMESTAMP, start),
                std::mem::take(&mut self.cluster),
            ]
            .concat();
            self.out
                .write_all(&element(CLUSTER, &body))
                .map_err(Self::io)?;
            self.out.flush().map_err(Self::io)?;
        }
        self.cluster.clear();
        Ok(())
    }

    /// One H.264 access unit (Annex-B) at `ms` into the recording. Until the first keyframe,
    /// video is dropped (nothing could decode it).
    ///
    /// # Errors
    /// On a write error.
    pub fn video(&mut self, ms: u64, annex_b: &[u8], keyframe: bool) -> Result<(), MediaError> {
        if self.duration_at.is_none() {
            let Some(avcc) = keyframe.then(|| avc_config(annex_b)).flatten() else {
                return Ok(());
            };
            self.write_header(&avcc)?;
            for (track, t, packet) in std::mem::take(&mut self.early) {
                if t + 200 >= ms {
                    self.block(track, t.max(ms), true, &packet)?;
                }
            }
        }
        self.block(1, ms, keyframe, &length_prefixed(annex_b))
    }

    /// One Opus packet for audio track `index` (0: the first audio track) at `ms`.
    ///
    /// # Errors
    /// On a write error.
    pub fn audio(&mut self, index: usize, ms: u64, packet: &[u8]) -> Result<(), MediaError> {
        let track = index as u64 + 2;
        if self.duration_at.is_none() {
            self.early.push((track, ms, packet.to_vec()));
            return Ok(());
        }
        self.block(track, ms, true, packet)
    }

    /// Writes what is left and the duration; returns the writer.
    ///
    /// # Errors
    /// On a write error.
    pub fn finish(mut self, duration_ms: u64) -> Result<W, MediaError> {
        self.flush_cluster()?;
        if let Some(at) = self.duration_at {
            let end = self.out.stream_position().map_err(Self::io)?;
            self.out.seek(SeekFrom::Start(at)).map_err(Self::io)?;
            let d = duration_ms.max(self.last_ms) as f64;
            self.out.write_all(&float(DURATION, d)).map_err(Self::io)?;
            self.out.seek(SeekFrom::Start(end)).map_err(Self::io)?;
            self.out.flush().map_err(Self::io)?;
        }
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nal_units_split_on_three_and_four_byte_start_codes() {
        let au = [
            0, 0, 0, 1, 0x67, 66, 0xC0, 30, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5,
        ];
        let nals = nal_units(&au);
        let want: Vec<&[u8]> = vec![&[0x67, 66, 0xC0, 30], &[0x68, 3], &[0x65, 4, 5]];
        assert_eq!(nals, want);
        let c = avc_config(&au).unwrap_or_default();
        assert_eq!(c.get(..6), Some(&[1, 66, 0xC0, 30, 0xFF, 0xE1][..]));
        assert_eq!(length_prefixed(&au).len(), 3 * 4 + 4 + 2 + 3);
    }

    #[test]
    fn the_duration_fills_its_reserved_space_exactly() {
        assert_eq!(float(DURATION, 1.0).len(), element(VOID, &[0u8; 9]).len());
    }

    #[test]
    fn nothing_is_written_before_a_keyframe_and_clusters_follow_time() -> Result<(), MediaError> {
        let mut w = MkvWriter::new(
            std::io::Cursor::new(Vec::new()),
            MkvLayout {
                width: 64,
                height: 64,
                title: "t".into(),
                audio_tracks: vec!["Mix".into()],
            },
        );
        w.audio(0, 0, &[1, 2, 3])?;
        w.video(0, &[0, 0, 1, 0x41, 9], false)?;
        assert!(w.out.get_ref().is_empty());
        let key = [0, 0, 1, 0x67, 66, 0, 30, 0, 0, 1, 0x68, 1, 0, 0, 1, 0x65, 7];
        w.video(40, &key, true)?;
        for ms in (60..2500).step_by(20) {
            w.audio(0, ms, &[1, 2, 3])?;
        }
        let out = w.finish(2500)?.into_inner();
        let clusters = out
            .windows(4)
            .filter(|x| *x == [0x1F, 0x43, 0xB6, 0x75])
            .count();
        assert_eq!(clusters, 3, "one cluster per second");
        assert!(
            out.windows(2).any(|x| x == [0x44, 0x89]),
            "duration written"
        );
        Ok(())
    }
}
