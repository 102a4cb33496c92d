//! Perfect negotiation (W3C's pattern) as a pure state machine: who is making an offer,
//! whether the signaling state is stable, which remote offer is ignored on a collision, and
//! the remote candidates that wait for a remote description. The signaling state is tracked
//! here rather than read from webrtc-rs's state-change callback, which is asynchronous and
//! can arrive after the remote offer of a glare does. The driver (`Peer`) asks it before and
//! tells it after each webrtc-rs call; it holds no I/O and no clock.

/// Remote candidates kept while no remote description is set (a browser sends a few per
/// interface; this bounds a remote that sends thousands). Past it, candidates are dropped
/// and counted.
pub(crate) const MAX_PENDING_CANDIDATES: usize = 128;

/// The DTLS certificate fingerprint a description (`{type, sdp}` JSON) names: the first
/// `a=fingerprint:` line, session or media level, as `"<hash> <HEX:…>"` with the hex in upper
/// case. Two descriptions with different fingerprints come from different peer connections:
/// a participant that restarted, or someone else under its id, never the call we have.
#[must_use]
pub fn dtls_fingerprint(description: &serde_json::Value) -> Option<String> {
    let sdp = description.get("sdp")?.as_str()?;
    let line = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=fingerprint:"))?;
    let (hash, value) = line.trim().split_once(' ')?;
    let value = value.trim();
    (!hash.is_empty() && !value.is_empty()).then(|| {
        format!(
            "{} {}",
            hash.to_ascii_lowercase(),
            value.to_ascii_uppercase()
        )
    })
}

/// What to do with a remote description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Remote {
    /// An offer that collided with ours, on the impolite side: ignored (ours wins).
    Ignore,
    /// Apply it; `rollback` first when it is an offer that collided with ours on the polite
    /// side.
    Apply { rollback: bool },
}

/// What to do with a remote candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Candidate<C> {
    /// Add it now.
    Add(C),
    /// Kept until the remote description is applied.
    Queued,
    /// It belongs to an offer this side ignored, or the queue is full.
    Dropped,
}

/// One connection's negotiation state.
#[derive(Debug)]
pub(crate) struct Negotiation<C> {
    polite: bool,
    making_offer: bool,
    ignore_offer: bool,
    stable: bool,
    remote_set: bool,
    pending: Vec<C>,
    dropped: u64,
}

impl<C> Negotiation<C> {
    pub fn new(polite: bool) -> Self {
        Self {
            polite,
            making_offer: false,
            ignore_offer: false,
            stable: true,
            remote_set: false,
            pending: Vec::new(),
            dropped: 0,
        }
    }

    /// We start making an offer.
    pub fn offer_started(&mut self) {
        self.making_offer = true;
    }

    /// Our offer is set as the local description: we wait for an answer.
    pub fn offer_set(&mut self) {
        self.stable = false;
    }

    /// Making our offer ended (sent or failed).
    pub fn offer_ended(&mut self) {
        self.making_offer = false;
    }

    /// A remote description arrived: apply it, with or without a rollback, or ignore it.
    pub fn remote(&mut self, is_offer: bool) -> Remote {
        let collision = is_offer && (self.making_offer || !self.stable);
        self.ignore_offer = !self.polite && collision;
        if self.ignore_offer {
            Remote::Ignore
        } else {
            Remote::Apply {
                rollback: collision,
            }
        }
    }

    /// The remote description was applied: the candidates that waited for it, to add now.
    /// An applied answer completes our offer; an applied offer awaits our answer.
    pub fn remote_applied(&mut self, is_offer: bool) -> Vec<C> {
        self.remote_set = true;
        self.stable = !is_offer;
        std::mem::take(&mut self.pending)
    }

    /// Our answer is set as the local description.
    pub fn answered(&mut self) {
        self.stable = true;
    }

    /// Whether a remote description was ever applied (before it, routes are unknown).
    pub fn remote_set(&self) -> bool {
        self.remote_set
    }

    /// Remote candidates dropped so far (queue full).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// A remote candidate arrived.
    pub fn candidate(&mut self, c: C) -> Candidate<C> {
        if !self.remote_set {
            if self.pending.len() >= MAX_PENDING_CANDIDATES {
                self.dropped += 1;
                return Candidate::Dropped;
            }
            self.pending.push(c);
            return Candidate::Queued;
        }
        if self.ignore_offer {
            return Candidate::Dropped;
        }
        Candidate::Add(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_read_from_the_first_line_and_normalised() {
        let desc = |sdp: &str| serde_json::json!({"type": "offer", "sdp": sdp});
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:SHA-256 ab:CD:01\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=fingerprint:sha-256 FF:FF\r\n";
        assert_eq!(
            dtls_fingerprint(&desc(sdp)).as_deref(),
            Some("sha-256 AB:CD:01")
        );
        assert_eq!(dtls_fingerprint(&desc("v=0\r\nm=audio 9 x 111\r\n")), None);
        assert_eq!(dtls_fingerprint(&desc("a=fingerprint:sha-256\r\n")), None);
        assert_eq!(
            dtls_fingerprint(&serde_json::json!({"type": "offer"})),
            None
        );
        assert_ne!(
            dtls_fingerprint(&desc("a=fingerprint:sha-256 AA:01")),
            dtls_fingerprint(&desc("a=fingerprint:sha-256 AA:02"))
        );
    }

    #[test]
    fn a_plain_offer_answer_exchange() {
        let mut n = Negotiation::<u32>::new(false);
        n.offer_started();
        n.offer_set();
        n.offer_ended();
        assert_eq!(n.candidate(1), Candidate::Queued);
        assert_eq!(n.remote(false), Remote::Apply { rollback: false });
        assert_eq!(n.remote_applied(false), vec![1]);
        assert_eq!(n.candidate(2), Candidate::Add(2));
        // A later offer from the remote (an ICE restart) is applied and answered.
        assert_eq!(n.remote(true), Remote::Apply { rollback: false });
        n.remote_applied(true);
        n.answered();
        assert!(n.remote_set());
    }

    #[test]
    fn glare_the_impolite_side_ignores_the_polite_side_rolls_back() {
        // In a running call (descriptions applied before), both sides offer at once.
        let mut impolite = Negotiation::<u32>::new(false);
        let mut polite = Negotiation::<u32>::new(true);
        for n in [&mut impolite, &mut polite] {
            n.remote_applied(false);
            n.offer_started();
            n.offer_set();
            n.offer_ended();
        }
        assert_eq!(impolite.remote(true), Remote::Ignore);
        // Candidates of the ignored offer are dropped.
        assert_eq!(impolite.candidate(9), Candidate::Dropped);
        assert_eq!(polite.remote(true), Remote::Apply { rollback: true });
        polite.remote_applied(true);
        polite.answered();
        // The polite side's answer reaches the impolite side: applied, candidates flow again.
        assert_eq!(impolite.remote(false), Remote::Apply { rollback: false });
        impolite.remote_applied(false);
        assert_eq!(impolite.candidate(10), Candidate::Add(10));
        // Making an offer counts as a collision too, even before it is set.
        let mut n = Negotiation::<u32>::new(true);
        n.offer_started();
        assert_eq!(n.remote(true), Remote::Apply { rollback: true });
    }

    #[test]
    fn the_queue_before_a_description_is_bounded() {
        let mut n = Negotiation::<usize>::new(true);
        for i in 0..MAX_PENDING_CANDIDATES {
            assert_eq!(n.candidate(i), Candidate::Queued);
        }
        assert_eq!(n.candidate(0), Candidate::Dropped);
        assert_eq!(n.dropped(), 1);
        assert_eq!(n.remote_applied(true).len(), MAX_PENDING_CANDIDATES);
    }
}
