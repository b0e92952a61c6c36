//! Group commit of job results: attempts that end while a write is in flight are written
//! together by the next one (`Ledger::finish_many`, one transaction), so N workers pay one commit
//! (one fsync under `synchronous=FULL`) per batch instead of one per job. Each result is still
//! fenced by its own lease token; a batch that fails tells every caller, who then writes its
//! result alone.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::ledger::{Completion, JobState, Ledger};
use crate::timestamp::Timestamp;

/// Most results written in one transaction.
const MAX_BATCH: usize = 256;

/// Where a result went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Recorded {
    Finished(JobState),
    /// The lease had expired and moved on: nothing was written.
    LeaseLost,
    /// The batch could not be written (or the completer is gone): write it alone.
    Failed,
}

struct Request {
    completion: Completion,
    reply: oneshot::Sender<Recorded>,
}

/// A handle to the pool's completer task; cloning shares it. The task ends when every handle is
/// dropped, after writing what it was given.
#[derive(Clone)]
pub(super) struct Completer {
    requests: mpsc::UnboundedSender<Request>,
}

impl Completer {
    pub(super) fn spawn(ledger: Ledger) -> (Self, JoinHandle<()>) {
        let (requests, rx) = mpsc::unbounded_channel();
        (Completer { requests }, tokio::spawn(run(ledger, rx)))
    }

    /// Writes `completion` with whatever else is waiting, and says where the job went.
    pub(super) async fn finish(&self, completion: Completion) -> Recorded {
        let (reply, answer) = oneshot::channel();
        if self.requests.send(Request { completion, reply }).is_err() {
            return Recorded::Failed;
        }
        answer.await.unwrap_or(Recorded::Failed)
    }
}

async fn run(ledger: Ledger, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let completions: Vec<Completion> = batch.iter().map(|r| r.completion.clone()).collect();
        match ledger.finish_many(&completions, Timestamp::now()).await {
            Ok(finished) => {
                let states: HashMap<_, _> = finished.into_iter().map(|f| (f.id, f.state)).collect();
                for request in batch.drain(..) {
                    let recorded = states
                        .get(&request.completion.id)
                        .map_or(Recorded::LeaseLost, |s| Recorded::Finished(*s));
                    let _ = request.reply.send(recorded);
                }
            }
            Err(e) => {
                warn!(error = %e, results = batch.len(), "writing a batch of job results failed; writing them one by one");
                for request in batch.drain(..) {
                    let _ = request.reply.send(Recorded::Failed);
                }
            }
        }
    }
}
