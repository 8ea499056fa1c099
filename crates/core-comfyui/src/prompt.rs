//! [`Job`]: a prompt queued on one server, followed until its end.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{ComfyError, NodeProblem};
use crate::job::{JobEvent, Outcome};
use crate::router::{End, Subscription};
use crate::shared::Shared;

/// Attempts to read a finished prompt's history (it is written before `executing null`, so
/// one normally suffices; the rest cover a server behind a slow proxy).
const HISTORY_ATTEMPTS: u32 = 5;
const HISTORY_RETRY_DELAY: Duration = Duration::from_millis(100);

/// A prompt queued on one server. Dropping it stops following the prompt (it keeps running
/// on the server; call [`Job::cancel`] to stop it).
#[derive(Debug)]
pub struct Job {
    prompt_id: String,
    number: f64,
    warnings: Vec<NodeProblem>,
    subscription: Subscription,
    shared: Arc<Shared>,
    ending: Option<End>,
    done: bool,
}

impl Job {
    pub(crate) fn new(
        prompt_id: String,
        number: f64,
        warnings: Vec<NodeProblem>,
        subscription: Subscription,
        shared: Arc<Shared>,
    ) -> Job {
        Job {
            prompt_id,
            number,
            warnings,
            subscription,
            shared,
            ending: None,
            done: false,
        }
    }

    pub fn prompt_id(&self) -> &str {
        &self.prompt_id
    }

    /// The server's queue number.
    pub fn number(&self) -> f64 {
        self.number
    }

    /// Output nodes ComfyUI dropped because their inputs failed validation (the others run).
    pub fn warnings(&self) -> &[NodeProblem] {
        &self.warnings
    }

    /// The next event; [`JobEvent::Finished`] comes last, then `None`.
    pub async fn next_event(&mut self) -> Option<JobEvent> {
        if self.done {
            return None;
        }
        if self.ending.is_none() {
            tokio::select! {
                biased;
                ev = self.subscription.events.recv() => match ev {
                    Some(ev) => return Some(ev),
                    None => self.ending = Some(End::Vanished("the ComfyUI client was shut down".into())),
                },
                end = &mut self.subscription.end => {
                    self.ending = Some(end.unwrap_or(End::Vanished("the ComfyUI client was shut down".into())));
                }
            }
        }
        // Hand out what arrived before the end, then the outcome.
        if let Ok(ev) = self.subscription.events.try_recv() {
            return Some(ev);
        }
        let end = self.ending.take().unwrap_or(End::Finished);
        self.done = true;
        self.shared.router.unsubscribe(&self.prompt_id);
        Some(JobEvent::Finished(self.outcome(end).await))
    }

    /// Skips the remaining events and returns the outcome.
    pub async fn wait(mut self) -> Outcome {
        while let Some(ev) = self.next_event().await {
            if let JobEvent::Finished(outcome) = ev {
                return outcome;
            }
        }
        Outcome::Lost {
            reason: "the job had already finished".into(),
        }
    }

    /// Deletes the prompt if pending, interrupts it if running.
    pub async fn cancel(&self) -> Result<(), ComfyError> {
        crate::shared::cancel(&self.shared, &self.prompt_id).await
    }

    async fn outcome(&self, end: End) -> Outcome {
        match end {
            End::Cancelled => Outcome::Cancelled,
            End::Vanished(reason) => Outcome::Lost { reason },
            End::Finished => {
                let mut last_error = String::new();
                for attempt in 0..HISTORY_ATTEMPTS {
                    match self.shared.http.history(&self.prompt_id).await {
                        Ok(Some(entry)) => return Outcome::from_history(&self.prompt_id, &entry),
                        Ok(None) => last_error = "it is not in the server's history".into(),
                        Err(e) => last_error = e.to_string(),
                    }
                    if attempt + 1 < HISTORY_ATTEMPTS {
                        tokio::time::sleep(HISTORY_RETRY_DELAY * (attempt + 1)).await;
                    }
                }
                Outcome::Lost {
                    reason: format!(
                        "the prompt finished but its result could not be read: {last_error}"
                    ),
                }
            }
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if !self.done {
            self.shared.router.unsubscribe(&self.prompt_id);
        }
    }
}
