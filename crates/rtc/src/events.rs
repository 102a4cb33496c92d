//! How a peer's events reach its owner: three bounded queues by kind, merged in order of
//! importance into the owner's channel, so that media (which a remote party can send as fast
//! as it likes) never pushes out the events a call needs.
//!
//! | queue | events | bound | at the bound |
//! | --- | --- | --- | --- |
//! | control | descriptions, our candidates, connection state, chat open, codec choice | 1024 | unreachable by construction (a few per negotiation); logged as an error and dropped |
//! | chat | data-channel messages (remote) | 256 | the newest is dropped and counted |
//! | media | frames, audio packets, sender reports, losses, keyframe requests (remote) | 512 | the newest is dropped and counted |
//!
//! One forwarder task per peer moves them on with backpressure (the owner's channel is never
//! written to with `try_send`), taking control first, then chat, then media.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::PeerEvent;

/// Control events queued at most (see the module table).
pub(crate) const CONTROL_QUEUE: usize = 1024;
/// Chat messages queued at most.
pub(crate) const CHAT_QUEUE: usize = 256;
/// Media events queued at most.
pub(crate) const MEDIA_QUEUE: usize = 512;

/// Which queue an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Control,
    Chat,
    Media,
}

pub(crate) fn class(event: &PeerEvent) -> Class {
    match event {
        PeerEvent::LocalDescription(_)
        | PeerEvent::LocalCandidate(_)
        | PeerEvent::Connection(_)
        | PeerEvent::ChatOpen
        | PeerEvent::NoVideoCodec
        | PeerEvent::SendVideoAs(_) => Class::Control,
        PeerEvent::Chat(_) => Class::Chat,
        PeerEvent::Video { .. }
        | PeerEvent::Audio { .. }
        | PeerEvent::Screen { .. }
        | PeerEvent::KeyframeRequested
        | PeerEvent::ScreenKeyframeRequested
        | PeerEvent::SenderReport { .. }
        | PeerEvent::VideoLoss { .. } => Class::Media,
    }
}

/// The sending side, held by the peer.
pub(crate) struct Queues {
    control: mpsc::Sender<PeerEvent>,
    chat: mpsc::Sender<PeerEvent>,
    media: mpsc::Sender<PeerEvent>,
    /// Chat messages and media events dropped because their queue was full.
    pub(crate) dropped_chat: AtomicU64,
    pub(crate) dropped_media: AtomicU64,
}

impl Queues {
    /// Makes the queues and starts the task that forwards them to `out`; it ends when the
    /// queues are dropped or `out`'s receiver is.
    pub(crate) fn start(out: mpsc::Sender<PeerEvent>) -> Self {
        let (control, mut control_rx) = mpsc::channel(CONTROL_QUEUE);
        let (chat, mut chat_rx) = mpsc::channel(CHAT_QUEUE);
        let (media, mut media_rx) = mpsc::channel(MEDIA_QUEUE);
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    biased;
                    // The owner is gone (the call ended): so is this task, at once.
                    () = out.closed() => return,
                    Some(e) = control_rx.recv() => e,
                    Some(e) = chat_rx.recv() => e,
                    Some(e) = media_rx.recv() => e,
                    else => return,
                };
                if out.send(event).await.is_err() {
                    return;
                }
            }
        });
        Self {
            control,
            chat,
            media,
            dropped_chat: AtomicU64::new(0),
            dropped_media: AtomicU64::new(0),
        }
    }

    /// Queues `event` by its kind; `false` when it was dropped (a full queue, or the owner is
    /// gone).
    pub(crate) fn push(&self, event: PeerEvent) -> bool {
        let kind = class(&event);
        let queue = match kind {
            Class::Control => &self.control,
            Class::Chat => &self.chat,
            Class::Media => &self.media,
        };
        match queue.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                match kind {
                    Class::Control => {
                        tracing::error!("peer control queue full; a control event was dropped");
                    }
                    Class::Chat => {
                        self.dropped_chat.fetch_add(1, Ordering::Relaxed);
                    }
                    Class::Media => {
                        self.dropped_media.fetch_add(1, Ordering::Relaxed);
                    }
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConnectionState;
    use bytes::Bytes;

    fn audio(n: u16) -> PeerEvent {
        PeerEvent::Audio {
            packet: Bytes::new(),
            sequence: n,
            rtp_timestamp: 0,
        }
    }

    #[tokio::test]
    async fn the_forwarder_ends_when_the_owner_is_gone() {
        let (out, rx) = mpsc::channel(4);
        let queues = Queues::start(out);
        assert!(queues.push(audio(1)));
        drop(rx);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // Its queues' receivers went with it.
        assert!(!queues.push(audio(2)));
        assert!(!queues.push(PeerEvent::ChatOpen));
    }

    #[tokio::test]
    async fn a_media_flood_never_pushes_out_control_events_and_control_goes_first() {
        // The owner reads nothing while a remote party floods media and chat.
        let (out, mut rx) = mpsc::channel(4);
        let queues = Queues::start(out);
        for n in 0..5000u16 {
            queues.push(audio(n));
        }
        for n in 0..1000 {
            queues.push(PeerEvent::Chat(format!("spam {n}")));
        }
        assert!(queues.push(PeerEvent::LocalDescription(
            serde_json::json!({"type": "offer"})
        )));
        assert!(queues.push(PeerEvent::Connection(ConnectionState::Connected)));
        tokio::task::yield_now().await;
        // The forwarder took some media before the owner's channel filled; the rest of the
        // flood beyond the bounds was dropped and counted.
        let media_dropped = queues.dropped_media.load(Ordering::Relaxed);
        let chat_dropped = queues.dropped_chat.load(Ordering::Relaxed);
        assert!(
            media_dropped >= 5000 - (MEDIA_QUEUE as u64 + 8),
            "{media_dropped}"
        );
        assert!(
            chat_dropped >= 1000 - (CHAT_QUEUE as u64 + 8),
            "{chat_dropped}"
        );
        // Reading now: whatever was already in the owner's channel comes first, then control
        // ahead of the queued chat and media.
        let mut seen = Vec::new();
        while seen.len() < 20 {
            let e = rx.recv().await.unwrap_or(PeerEvent::ChatOpen);
            seen.push(class(&e));
        }
        let first_control = seen.iter().position(|c| *c == Class::Control);
        let first_chat = seen.iter().position(|c| *c == Class::Chat);
        assert!(
            matches!((first_control, first_chat), (Some(a), Some(b)) if a < b),
            "control before chat: {seen:?}"
        );
        assert!(
            first_control.is_some_and(|i| i <= 5),
            "control within what was already forwarded: {seen:?}"
        );
        let controls = seen.iter().filter(|c| **c == Class::Control).count();
        assert_eq!(controls, 2, "both control events arrived: {seen:?}");
    }
}
