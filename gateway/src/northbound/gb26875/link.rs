//! One (centre, site) link: the TCP client that empties the site's outbox
//! towards the centre and answers the centre's commands.
//!
//! Stop-and-wait, so the centre sees units in outbox order: the head is
//! sent with a fresh 业务流水号 and sent again every `resend_after_secs`
//! until a confirm (命令 3) with that number; a deny (命令 6) sends it again
//! at once. `resend_times` resends without an answer (or that many denies
//! in a row): the link is down, the connection is closed, and after
//! `reconnect_secs` a new one starts from the same head. While idle an
//! empty command-2 frame goes every `heartbeat_secs`. Malformed frames
//! from the centre are denied with their number when it is readable.
//!
//! Time: tokio's clock for every wait (tests pause it), the wall clock only
//! for the time labels.

use super::config::CentreConfig;
use super::frame::{Command, Deframer, Frame, FrameError, TimeLabel};
use super::metrics::LinkCounters;
use super::outbox::{Head, Outbox};
use super::unit::DataUnit;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Answers the centre's commands (reads, time sync, 查岗): the shell's
/// access to the gateway's state.
pub trait Downstream: Send + Sync + 'static {
    /// The unit answering a read (命令 5), `None` to deny it.
    fn read(
        &self,
        site: &str,
        kind: u8,
        objects: &[Vec<u8>],
    ) -> futures_util::future::BoxFuture<'_, Option<DataUnit>>;
    /// The centre's command (time sync, 查岗, initialise) was received and
    /// confirmed.
    fn command(&self, site: &str, unit: &DataUnit, frame_time: TimeLabel);
}

/// Everything a link needs.
pub struct Link {
    pub centre: Arc<CentreConfig>,
    pub site: String,
    pub source: [u8; 6],
    pub destination: [u8; 6],
    pub outbox: Outbox,
    pub counters: Arc<LinkCounters>,
    /// Poked when a unit is queued.
    pub wake: Arc<Notify>,
    pub downstream: Arc<dyn Downstream>,
    /// Link up (true) or down, for the duty desk and the device state.
    pub up: tokio::sync::watch::Sender<bool>,
}

/// Why a session ended.
#[derive(Debug)]
pub enum Ended {
    Cancelled,
    Closed,
    Silent,
    Io(std::io::Error),
    Store(crate::store::StoreError),
}

/// How often an idle link looks at its outbox without being woken.
const IDLE_POLL_SECS: u64 = 5;

struct InFlight {
    head: Head,
    serial: u16,
    deadline: Instant,
    tries: u32,
}

impl Link {
    fn frame(&self, serial: u16, command: Command, data: Vec<u8>) -> Vec<u8> {
        let f = Frame {
            serial,
            version: self.centre.version,
            time: TimeLabel::from_unix_ms(crate::domain::time::now_ms()),
            source: self.source,
            destination: self.destination,
            command,
            data,
        };
        // Units come from our own encoder or the outbox (≤ 1024 bytes).
        f.encode().unwrap_or_default()
    }

    /// Connects, runs a session, reconnects; until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        let mut serial: u16 = 0;
        loop {
            let connect = tokio::time::timeout(
                Duration::from_secs(10),
                TcpStream::connect(&self.centre.address),
            );
            let stream = tokio::select! {
                _ = cancel.cancelled() => return,
                r = connect => r,
            };
            match stream {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    self.counters.connects.fetch_add(1, Ordering::Relaxed);
                    self.counters.up.store(1, Ordering::Relaxed);
                    self.up.send_replace(true);
                    tracing::info!(centre = %self.centre.name, site = %self.site, "GB/T 26875 link up");
                    let ended = self.session(stream, &mut serial, &cancel).await;
                    self.counters.up.store(0, Ordering::Relaxed);
                    self.up.send_replace(false);
                    if matches!(ended, Ended::Cancelled) {
                        return;
                    }
                    self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(centre = %self.centre.name, site = %self.site, reason = ?ended, "GB/T 26875 link down");
                }
                Ok(Err(e)) => {
                    tracing::debug!(centre = %self.centre.name, error = %e, "cannot connect");
                }
                Err(_) => tracing::debug!(centre = %self.centre.name, "connect timed out"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(self.centre.reconnect_secs)) => {}
            }
        }
    }

    async fn session(
        &self,
        mut stream: TcpStream,
        serial: &mut u16,
        cancel: &CancellationToken,
    ) -> Ended {
        let resend = Duration::from_secs(self.centre.resend_after_secs);
        let heartbeat = (self.centre.heartbeat_secs > 0)
            .then(|| Duration::from_secs(self.centre.heartbeat_secs));
        let mut deframer = Deframer::new();
        let mut buf = vec![0u8; Deframer::ROOM];
        let mut in_flight: Option<InFlight> = None;
        let mut last_tx = Instant::now();
        let mut denies_in_row = 0u32;
        loop {
            if in_flight.is_none() {
                match self.outbox.head().await {
                    Ok(Some(head)) => {
                        *serial = serial.wrapping_add(1);
                        let bytes = self.frame(*serial, Command::Send, head.unit.clone());
                        if let Err(e) = stream.write_all(&bytes).await {
                            return Ended::Io(e);
                        }
                        let _ = self.outbox.attempted(head.id).await;
                        self.counters.sent.fetch_add(1, Ordering::Relaxed);
                        last_tx = Instant::now();
                        in_flight = Some(InFlight {
                            head,
                            serial: *serial,
                            deadline: last_tx + resend,
                            tries: 0,
                        });
                    }
                    Ok(None) => {}
                    Err(e) => return Ended::Store(e),
                }
                if let Ok(d) = self.outbox.depth().await {
                    self.counters.queue_depth.store(d, Ordering::Relaxed);
                }
            }
            // Idle: the heartbeat, and a look at the outbox every 5 s in
            // case a unit was queued without a wake-up (another process).
            let idle_poll = Instant::now() + Duration::from_secs(IDLE_POLL_SECS);
            let wake_at = match (&in_flight, heartbeat) {
                (Some(f), _) => Some(f.deadline),
                (None, Some(h)) => Some((last_tx + h).min(idle_poll)),
                (None, None) => Some(idle_poll),
            };
            let timer = async {
                match wake_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return Ended::Cancelled,
                _ = self.wake.notified(), if in_flight.is_none() => {}
                _ = timer => {
                    match in_flight.as_mut() {
                        Some(f) if f.tries < self.centre.resend_times => {
                            f.tries += 1;
                            let bytes = self.frame(f.serial, Command::Send, f.head.unit.clone());
                            if let Err(e) = stream.write_all(&bytes).await {
                                return Ended::Io(e);
                            }
                            let _ = self.outbox.attempted(f.head.id).await;
                            self.counters.sent.fetch_add(1, Ordering::Relaxed);
                            self.counters.retried.fetch_add(1, Ordering::Relaxed);
                            last_tx = Instant::now();
                            f.deadline = last_tx + resend;
                        }
                        Some(_) => return Ended::Silent,
                        None if heartbeat.is_none_or(|h| Instant::now() < last_tx + h) => {}
                        None => {
                            *serial = serial.wrapping_add(1);
                            let bytes = self.frame(*serial, Command::Send, Vec::new());
                            if let Err(e) = stream.write_all(&bytes).await {
                                return Ended::Io(e);
                            }
                            last_tx = Instant::now();
                        }
                    }
                }
                r = stream.read(&mut buf) => {
                    let n = match r {
                        Ok(0) => return Ended::Closed,
                        Ok(n) => n,
                        Err(e) => return Ended::Io(e),
                    };
                    let mut rest = &buf[..n];
                    while !rest.is_empty() {
                        let took = deframer.push(rest);
                        rest = &rest[took..];
                        while let Some(got) = deframer.next_frame() {
                            match got {
                                Ok(f) => {
                                    match self.incoming(&mut stream, f, &mut in_flight, &mut denies_in_row).await {
                                        Ok(()) => {}
                                        Err(e) => return e,
                                    }
                                }
                                Err(e) => {
                                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                                    tracing::warn!(centre = %self.centre.name, error = %e, "frame from the centre refused");
                                    if let Some(s) = e.serial() {
                                        if !matches!(e, FrameError::BadEnd { .. }) {
                                            let bytes = self.frame(s, Command::Deny, Vec::new());
                                            if let Err(e) = stream.write_all(&bytes).await {
                                                return Ended::Io(e);
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    if denies_in_row > self.centre.resend_times {
                        return Ended::Silent;
                    }
                }
            }
        }
    }

    async fn incoming(
        &self,
        stream: &mut TcpStream,
        f: Frame,
        in_flight: &mut Option<InFlight>,
        denies_in_row: &mut u32,
    ) -> Result<(), Ended> {
        let reply = |command: Command, data: Vec<u8>| self.frame(f.serial, command, data);
        match f.command {
            Command::Confirm => {
                if let Some(fl) = in_flight.as_ref().filter(|fl| fl.serial == f.serial) {
                    if let Err(e) = self
                        .outbox
                        .confirm(fl.head.id, crate::domain::time::now_ms() as i64)
                        .await
                    {
                        return Err(Ended::Store(e));
                    }
                    self.counters.confirmed.fetch_add(1, Ordering::Relaxed);
                    *denies_in_row = 0;
                    *in_flight = None;
                }
                Ok(())
            }
            Command::Deny => {
                if let Some(fl) = in_flight.as_mut().filter(|fl| fl.serial == f.serial) {
                    self.counters.denied.fetch_add(1, Ordering::Relaxed);
                    *denies_in_row += 1;
                    tracing::warn!(centre = %self.centre.name, site = %self.site, subject = %fl.head.subject, "the centre denied a frame; sending it again");
                    let bytes = self.frame(fl.serial, Command::Send, fl.head.unit.clone());
                    stream.write_all(&bytes).await.map_err(Ended::Io)?;
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    self.counters.retried.fetch_add(1, Ordering::Relaxed);
                    fl.deadline =
                        Instant::now() + Duration::from_secs(self.centre.resend_after_secs);
                }
                Ok(())
            }
            Command::Response => Ok(()),
            Command::Control | Command::Send | Command::Request => {
                if f.data.is_empty() {
                    // The centre's heartbeat.
                    return stream
                        .write_all(&reply(Command::Confirm, Vec::new()))
                        .await
                        .map_err(Ended::Io);
                }
                let answer = match DataUnit::decode(&f.data) {
                    Ok(DataUnit::Read { kind, objects }) => {
                        match self.downstream.read(&self.site, kind, &objects).await {
                            Some(unit) => match unit.encode() {
                                Ok(b) => reply(Command::Response, b),
                                Err(_) => reply(Command::Deny, Vec::new()),
                            },
                            None => reply(Command::Deny, Vec::new()),
                        }
                    }
                    Ok(
                        u @ (DataUnit::TimeSync(_)
                        | DataUnit::DutyCheck(_)
                        | DataUnit::Initialise(_)),
                    ) => {
                        self.downstream.command(&self.site, &u, f.time);
                        reply(Command::Confirm, Vec::new())
                    }
                    Ok(other) => {
                        tracing::info!(centre = %self.centre.name, kind = other.kind(), "unit from the centre not acted on");
                        reply(Command::Confirm, Vec::new())
                    }
                    Err(e) => {
                        self.counters.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(centre = %self.centre.name, error = %e, "data unit from the centre refused");
                        reply(Command::Deny, Vec::new())
                    }
                };
                stream.write_all(&answer).await.map_err(Ended::Io)
            }
        }
    }
}
