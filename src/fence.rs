//! Leadership as a fence. A replica may change a swarm only while it holds
//! the Lease with time to spare: until the renew deadline after the start
//! of its last successful renewal. The deadline is shorter than the lease
//! duration, so a replica that cannot renew stops before any other replica
//! may take the lease. Every Docker mutation checks the fence immediately
//! before it is sent; a term's passes are cancelled when it closes.
//!
//! Only the lease loop (`operator::lease`) moves the fence. The CLI and an
//! operator without leader election use [`Fence::open`].

use std::time::Instant;
use tokio::sync::watch;

/// A read-only view of one leadership term (or of none: always open).
#[derive(Clone, Debug)]
pub(crate) struct Fence(Option<watch::Receiver<Option<Instant>>>);

/// Why a mutation was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Fenced {
    #[error("not the leader any more: the lease was not renewed within the renew deadline")]
    Expired,
    #[error("not the leader any more: the lease was lost")]
    Lost,
}

impl Fence {
    /// No election: every call may go.
    pub(crate) fn open() -> Self {
        Fence(None)
    }

    /// Whether a mutation may be sent now.
    pub(crate) fn check(&self) -> Result<(), Fenced> {
        let Some(rx) = &self.0 else {
            return Ok(());
        };
        match *rx.borrow() {
            Some(until) if Instant::now() < until => Ok(()),
            Some(_) => Err(Fenced::Expired),
            None => Err(Fenced::Lost),
        }
    }

    /// Resolves when the term ends: the deadline passes without a renewal,
    /// the lease is lost or given up, or its keeper is gone. Never resolves
    /// for an open fence.
    pub(crate) async fn closed(&self) {
        let Some(rx) = &self.0 else {
            return futures::future::pending().await;
        };
        let mut rx = rx.clone();
        loop {
            let until = *rx.borrow_and_update();
            let Some(until) = until else { return };
            if Instant::now() >= until {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => {}
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// The lease loop's side of a term: moves the deadline on each renewal and
/// closes the fence. Dropping it closes the fence too.
#[derive(Debug)]
pub(crate) struct Keeper(watch::Sender<Option<Instant>>);

impl Keeper {
    /// A term valid until `until`, and its fence.
    pub(crate) fn new(until: Instant) -> (Keeper, Fence) {
        let (tx, rx) = watch::channel(Some(until));
        (Keeper(tx), Fence(Some(rx)))
    }

    /// A renewal succeeded: valid until `until` (never moved back).
    pub(crate) fn extend(&self, until: Instant) {
        self.0.send_if_modified(|u| match u {
            Some(old) if *old < until => {
                *old = until;
                true
            }
            _ => false,
        });
    }

    /// Until when the term is valid; `None` once closed.
    pub(crate) fn until(&self) -> Option<Instant> {
        *self.0.borrow()
    }

    /// Ends the term now.
    pub(crate) fn close(&self) {
        self.0.send_replace(None);
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_open_fence_always_lets_calls_go() {
        assert_eq!(Fence::open().check(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_term_ends_at_its_deadline_unless_renewed() {
        let start = Instant::now();
        let (keeper, fence) = Keeper::new(start + Duration::from_secs(10));
        assert_eq!(fence.check(), Ok(()));
        keeper.extend(start + Duration::from_secs(12));
        // Never moved back by a late answer to an older renewal.
        keeper.extend(start + Duration::from_secs(11));
        let closed = fence.clone();
        let waited = tokio::spawn(async move {
            closed.closed().await;
            Instant::now()
        });
        let ended = waited.await.unwrap();
        assert!(ended >= start + Duration::from_secs(12), "{ended:?}");
        assert_eq!(fence.check(), Err(Fenced::Expired));
    }

    #[tokio::test]
    async fn a_closed_or_dropped_keeper_closes_the_fence_at_once() {
        let far = Instant::now() + Duration::from_secs(3600);
        let (keeper, fence) = Keeper::new(far);
        keeper.close();
        assert_eq!(fence.check(), Err(Fenced::Lost));
        fence.closed().await;

        let (keeper, fence) = Keeper::new(far);
        drop(keeper);
        fence.closed().await;
        assert!(fence.check().is_err());
    }
}
