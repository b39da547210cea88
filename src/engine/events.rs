//! The engine's event stream (`GET /events`): container lifecycle and
//! network changes (create, destroy, connect, disconnect), read as they
//! happen, and a watcher that reconnects after breaks.

use super::error::{EngineError, ErrorKind};
use super::models::Event;
use super::{Engine, Result};
use crate::retry::{self, Backoff};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;

/// A line longer than this is not an event; the stream is broken.
const MAX_LINE: usize = 1 << 20;

/// One open event stream. Docker writes one JSON object per line.
pub(crate) struct EventStream {
    node: String,
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: Vec<u8>,
}

impl EventStream {
    pub(crate) fn new(node: String, resp: reqwest::Response) -> Self {
        Self {
            node,
            inner: Box::pin(resp.bytes_stream()),
            buf: Vec::new(),
        }
    }

    fn broken(&self, message: String) -> EngineError {
        EngineError::new(
            ErrorKind::Unreachable,
            &self.node,
            "GET /events",
            None,
            message,
        )
    }

    /// The next event; `None` when the engine closed the stream.
    pub(crate) async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                return Some(serde_json::from_slice(line).map_err(|e| {
                    EngineError::new(
                        ErrorKind::Decode,
                        &self.node,
                        "GET /events",
                        None,
                        e.to_string(),
                    )
                }));
            }
            if self.buf.len() > MAX_LINE {
                return Some(Err(self.broken("an event longer than 1 MiB".into())));
            }
            match self.inner.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    return Some(Err(
                        self.broken(format!("stream broken: {}", e.without_url()))
                    ));
                }
                None => return None,
            }
        }
    }
}

/// What a watcher reports.
#[derive(Debug, Clone)]
pub enum Watch {
    /// The stream is (re)established: events may have been missed before
    /// this, so a consumer should resynchronise.
    Connected {
        node: String,
    },
    Event {
        node: String,
        event: Event,
    },
    /// The stream broke or could not be opened; the watcher retries.
    Lost {
        node: String,
        error: EngineError,
    },
}

/// `since` for resuming after the last event seen: `seconds.nanoseconds`.
fn since_of(e: &Event) -> Option<String> {
    if e.time_nano > 0 {
        Some(format!(
            "{}.{:09}",
            e.time_nano / 1_000_000_000,
            e.time_nano % 1_000_000_000
        ))
    } else if e.time > 0 {
        Some(e.time.to_string())
    } else {
        None
    }
}

/// How long a stream must have stayed open for its end to count as a
/// break of a healthy stream rather than one more failure to connect.
const STABLE: Duration = Duration::from_secs(30);

/// Follows one engine's events until the receiver is dropped, reconnecting
/// with backoff (and resuming after the last event seen) when the stream
/// breaks.
pub async fn watch(engine: Engine, tx: mpsc::Sender<Watch>, max_backoff: Duration) {
    let node = engine.label().to_owned();
    let mut backoff = Backoff::new(retry::Policy {
        max: max_backoff,
        ..retry::EVENT_STREAM
    });
    let mut since: Option<String> = None;
    loop {
        match engine.events(since.as_deref()).await {
            Ok(mut stream) => {
                let opened = std::time::Instant::now();
                if tx
                    .send(Watch::Connected { node: node.clone() })
                    .await
                    .is_err()
                {
                    return;
                }
                loop {
                    let msg = match stream.next().await {
                        Some(Ok(event)) => {
                            since = since_of(&event).or(since.take());
                            Watch::Event {
                                node: node.clone(),
                                event,
                            }
                        }
                        Some(Err(error)) if error.kind == ErrorKind::Decode => {
                            tracing::warn!(%node, %error, "skipping an unreadable event");
                            continue;
                        }
                        Some(Err(error)) => {
                            let _ = tx
                                .send(Watch::Lost {
                                    node: node.clone(),
                                    error,
                                })
                                .await;
                            break;
                        }
                        None => {
                            let error = EngineError::new(
                                ErrorKind::Unreachable,
                                &node,
                                "GET /events",
                                None,
                                "the engine closed the stream",
                            );
                            let _ = tx
                                .send(Watch::Lost {
                                    node: node.clone(),
                                    error,
                                })
                                .await;
                            break;
                        }
                    };
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                }
                // Only a stream that stayed up starts the backoff anew: one
                // that the engine (or a proxy) closes at once is a failure.
                if opened.elapsed() >= STABLE {
                    backoff.reset();
                }
            }
            Err(error) => {
                if tx
                    .send(Watch::Lost {
                        node: node.clone(),
                        error,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff.next_jittered()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(retry::Policy {
            first: Duration::from_millis(250),
            factor: 2,
            max: Duration::from_secs(1),
        });
        let d: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(d, [250, 500, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 250);
    }

    #[test]
    fn resumes_after_the_last_event() {
        let e = Event {
            time: 1_700_000_000,
            time_nano: 1_700_000_000_000_000_123,
            ..Default::default()
        };
        assert_eq!(since_of(&e).as_deref(), Some("1700000000.000000123"));
    }
}
