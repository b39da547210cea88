//! Leadership as a fence. A replica may change a swarm only while it holds
//! the Lease with time to spare: until the renew deadline after the start
//! of its last successful renewal. The deadline is shorter than the lease
//! duration, so a replica that cannot renew stops before any other replica
//! may take the lease. Every Docker mutation checks the fence immediately
//! before it is sent; a term's passes are cancelled when it closes.
//!
//! Only the lease loop (`operator::lease`) moves the fence. The CLI and an
//! operator without leader election use [`Fence::open`]. Under per-swarm
//! leadership each swarm has its own term, and a view of a swarm follows
//! whichever term of that swarm is current ([`Fence::follow`]).

use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// A read-only view of one leadership term (or of none: always open).
#[derive(Clone)]
pub(crate) struct Fence(Inner);

#[derive(Clone)]
enum Inner {
    Open,
    Term(watch::Receiver<Option<Instant>>),
    /// Whatever term is current for one swarm, looked up at each check
    /// (per-swarm leadership: a view learns its swarm after it is built).
    Follow(Arc<dyn Fn() -> Fence + Send + Sync>),
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::Open => f.write_str("Fence::Open"),
            Inner::Term(rx) => write!(f, "Fence::Term({:?})", *rx.borrow()),
            Inner::Follow(_) => f.write_str("Fence::Follow"),
        }
    }
}

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
        Fence(Inner::Open)
    }

    /// Never open: no term (this replica does not lead).
    pub(crate) fn shut() -> Self {
        let (_, rx) = watch::channel(None);
        Fence(Inner::Term(rx))
    }

    /// The fence `current` returns at each check: the term of whoever is
    /// current when the call is made.
    pub(crate) fn follow(current: impl Fn() -> Fence + Send + Sync + 'static) -> Self {
        Fence(Inner::Follow(Arc::new(current)))
    }

    /// Whether a mutation may be sent now.
    pub(crate) fn check(&self) -> Result<(), Fenced> {
        match &self.0 {
            Inner::Open => Ok(()),
            Inner::Follow(current) => current().check(),
            Inner::Term(rx) => match *rx.borrow() {
                Some(until) if Instant::now() < until => Ok(()),
                Some(_) => Err(Fenced::Expired),
                None => Err(Fenced::Lost),
            },
        }
    }

    /// Resolves when the term ends: the deadline passes without a renewal,
    /// the lease is lost or given up, or its keeper is gone. Never resolves
    /// for an open fence; for a following one, when the term current now ends.
    pub(crate) async fn closed(&self) {
        let rx = match &self.0 {
            Inner::Open => return futures::future::pending().await,
            Inner::Follow(current) => return Box::pin(current().closed()).await,
            Inner::Term(rx) => rx,
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
        (Keeper(tx), Fence(Inner::Term(rx)))
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
        assert_eq!(Fence::shut().check(), Err(Fenced::Lost));
    }

    #[tokio::test]
    async fn a_following_fence_checks_whichever_term_is_current() {
        let far = Instant::now() + Duration::from_secs(3600);
        let current = Arc::new(std::sync::Mutex::new(Fence::shut()));
        let seen = current.clone();
        let fence = Fence::follow(move || seen.lock().unwrap().clone());
        assert_eq!(fence.check(), Err(Fenced::Lost), "no term yet");
        let (keeper, term) = Keeper::new(far);
        *current.lock().unwrap() = term;
        assert_eq!(fence.check(), Ok(()));
        keeper.close();
        assert_eq!(fence.check(), Err(Fenced::Lost));
        fence.closed().await;
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
