//! Rounds: the passes of the bindings that share one swarm view run
//! together. While a round runs, the bindings that want a pass wait; the
//! next round takes every one of them: one observation of the swarm, one
//! survey of who holds which address, and every plan applied at once
//! ([`crate::reconcile::Pass::run_together`]). Five hundred bindings on one
//! swarm cost a few rounds, not five hundred passes over the whole swarm,
//! and a binding alone costs what its pass did before.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use tokio::sync::oneshot;

/// The requests waiting for a view's next round (`Q`), and the turn to run
/// one; a round answers each request with an `A`.
pub(crate) struct Rounds<Q, A> {
    waiting: Mutex<Vec<(Q, oneshot::Sender<A>)>>,
    turn: tokio::sync::Mutex<()>,
}

impl<Q, A> Default for Rounds<Q, A> {
    fn default() -> Self {
        Self {
            waiting: Mutex::new(Vec::new()),
            turn: tokio::sync::Mutex::new(()),
        }
    }
}

impl<Q, A> std::fmt::Debug for Rounds<Q, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let waiting = self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("Rounds").field("waiting", &waiting).finish()
    }
}

impl<Q, A> Rounds<Q, A> {
    /// `request`'s answer, from the next round: the one this call runs with
    /// `round` (over every request waiting when it starts, this one
    /// included), or one another caller runs. `None` when the round that
    /// took it was cancelled (its caller went away): ask again.
    pub(crate) async fn run<F, Fut>(&self, request: Q, round: F) -> Option<A>
    where
        F: FnOnce(Vec<Q>) -> Fut,
        Fut: Future<Output = Vec<A>>,
    {
        let (tx, mut rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((request, tx));
        let turn = tokio::select! {
            biased;
            answer = &mut rx => return answer.ok(),
            turn = self.turn.lock() => turn,
        };
        // A round that ended while this call waited for the turn took it
        // (and answered, or was cancelled); otherwise it is still waiting,
        // since requests are only taken under the turn.
        match rx.try_recv() {
            Ok(answer) => return Some(answer),
            Err(oneshot::error::TryRecvError::Closed) => return None,
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let batch =
            std::mem::take(&mut *self.waiting.lock().unwrap_or_else(PoisonError::into_inner));
        let (requests, replies): (Vec<Q>, Vec<oneshot::Sender<A>>) = batch.into_iter().unzip();
        let answers = round(requests).await;
        for (reply, answer) in replies.into_iter().zip(answers) {
            // The asker may have gone; its answer is of no use then.
            let _ = reply.send(answer);
        }
        drop(turn);
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn requests_that_wait_for_a_round_run_together_in_the_next_one() {
        let rounds: Arc<Rounds<u32, u32>> = Arc::new(Rounds::default());
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let ask = |n: u32| {
            let rounds = rounds.clone();
            let sizes = sizes.clone();
            tokio::spawn(async move {
                rounds
                    .run(n, |batch: Vec<u32>| async move {
                        sizes.lock().unwrap().push(batch.len());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        batch.iter().map(|q| q * 10).collect()
                    })
                    .await
            })
        };
        let first = ask(1);
        tokio::time::sleep(Duration::from_millis(10)).await;
        // These arrive while the first round runs.
        let rest: Vec<_> = (2..=6).map(ask).collect();
        assert_eq!(first.await.unwrap(), Some(10));
        for (n, h) in (2..=6).zip(rest) {
            assert_eq!(h.await.unwrap(), Some(n * 10), "each gets its own answer");
        }
        assert_eq!(*sizes.lock().unwrap(), [1, 5], "one round for the five");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_round_answers_none_and_the_next_one_runs() {
        let rounds: Arc<Rounds<u32, u32>> = Arc::new(Rounds::default());
        let r = rounds.clone();
        let stuck = tokio::spawn(async move {
            r.run(1, |_batch: Vec<u32>| async {
                futures::future::pending::<()>().await;
                vec![]
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let r = rounds.clone();
        let waiting = tokio::spawn(async move { r.run(2, |b: Vec<u32>| async move { b }).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        stuck.abort();
        assert_eq!(waiting.await.unwrap(), Some(2), "it ran its own round");
        let again = rounds.run(3, |b: Vec<u32>| async move { b }).await;
        assert_eq!(again, Some(3));

        // A request taken by a round that is then cancelled: None.
        let r = rounds.clone();
        let busy = tokio::spawn(async move {
            r.run(4, |b: Vec<u32>| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                b
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let r = rounds.clone();
        let runner = tokio::spawn(async move {
            r.run(5, |_b: Vec<u32>| async {
                futures::future::pending::<()>().await;
                vec![]
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        let r = rounds.clone();
        let taken = tokio::spawn(async move { r.run(6, |b: Vec<u32>| async move { b }).await });
        assert_eq!(busy.await.unwrap(), Some(4));
        tokio::time::sleep(Duration::from_millis(10)).await;
        runner.abort();
        assert_eq!(taken.await.unwrap(), None, "its round went away");
    }
}
