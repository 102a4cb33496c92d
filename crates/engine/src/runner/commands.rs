//! What the app or the CLI asks of a call (`Command`): chat, mute, camera, devices, screen
//! share, hang up.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Runner {
    pub(super) async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::SendChat(text) => {
                let count = text.chars().count();
                if count == 0 || count > MAX_CHAT_CHARS {
                    self.error(
                        ErrorKind::Signaling,
                        "a chat message has 1 to 1000 characters".into(),
                    )
                    .await;
                    return;
                }
                if self.mode == Mode::Random {
                    if let Err(e) = self.session.send_chat(&text).await {
                        self.error(ErrorKind::Signaling, format!("chat: {e}")).await;
                    }
                    return;
                }
                let msg = PeerMessage::Chat { text }.to_json();
                let mut refused = None;
                for (id, m) in &self.members {
                    if let Err(e @ liveloop_rtc::RtcError::SendBufferFull) =
                        m.peer.send_chat(&msg).await
                    {
                        refused = Some(format!("chat to {id}: {e}"));
                    }
                }
                if let Some(message) = refused {
                    self.error(ErrorKind::Signaling, message).await;
                }
            }
            Command::SetMuted(muted) => {
                self.flags.muted.store(muted, Ordering::Relaxed);
                self.broadcast_state().await;
            }
            Command::SetAudioProcessing(settings) => {
                self.flags
                    .processing
                    .store(settings.bits(), Ordering::Relaxed);
            }
            Command::SetCamera(on) => {
                if on && !self.has_video {
                    self.error(ErrorKind::NoDevice, "no camera to turn on".into())
                        .await;
                    return;
                }
                self.flags.camera_on.store(on, Ordering::Relaxed);
                if on {
                    self.flags.request_all_keyframes();
                }
                self.broadcast_state().await;
            }
            Command::SetVideoSource(source) => {
                self.has_video = true;
                let _ = self.video_swap.send(source);
            }
            Command::SetAudioSource(source) => {
                let _ = self.audio_swap.send(source);
            }
            Command::ShareScreen(source) => {
                if let Some(old) = self.screen.take() {
                    old.stop.store(true, Ordering::Relaxed);
                }
                self.screen_generation += 1;
                let flags = Arc::new(ScreenFlags::default());
                flags.keyframe.request_all();
                media::start_screen(
                    source,
                    flags.clone(),
                    self.encoded_screen.clone(),
                    self.screen_ended.clone(),
                    self.screen_generation,
                );
                self.screen = Some(flags);
                self.broadcast_state().await;
                self.emit(EngineEvent::ScreenShare {
                    sharing: true,
                    reason: None,
                })
                .await;
            }
            Command::StopScreenShare => {
                if let Some(old) = self.screen.take() {
                    old.stop.store(true, Ordering::Relaxed);
                    self.broadcast_state().await;
                    self.emit(EngineEvent::ScreenShare {
                        sharing: false,
                        reason: None,
                    })
                    .await;
                }
            }
            Command::HangUp(who) if self.mode == Mode::Room => {
                let ids: Vec<String> = match who {
                    Some(id) => vec![id],
                    None => self.members.keys().cloned().collect(),
                };
                for id in ids {
                    if self.members.contains_key(&id) {
                        let _ = self.session.send(&id, Outgoing::Hangup).await;
                        self.remove_member(&id).await;
                        self.emit(EngineEvent::PeerLeft { id }).await;
                    }
                }
                self.update_state().await;
            }
            Command::HangUp(_) | Command::Stop => {
                if self.mode == Mode::Room {
                    self.error(ErrorKind::Signaling, "Stop is for random chat".into())
                        .await;
                    return;
                }
                if let Err(e) = self.session.end_call().await {
                    self.error(ErrorKind::Signaling, format!("stop: {e}")).await;
                }
                self.searching = false;
                self.drop_all_members().await;
                self.update_state().await;
            }
            Command::Next => {
                if self.mode == Mode::Room {
                    self.error(ErrorKind::Signaling, "Next is for random chat".into())
                        .await;
                    return;
                }
                self.drop_all_members().await;
                self.searching = true;
                if let Err(e) = self.session.find_partner().await {
                    self.error(ErrorKind::Signaling, format!("next: {e}")).await;
                }
                self.update_state().await;
            }
            Command::Leave => {}
        }
    }
}
