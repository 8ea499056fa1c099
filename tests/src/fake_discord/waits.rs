//! Waits on stored messages, for the bot's end-to-end tests.

use std::time::Duration;

use super::{FakeDiscord, StoredMessage};

impl FakeDiscord {
    /// The first stored message (now or later) for which `pred` holds, or `None` after
    /// `timeout`. Woken by every change the fake records, never polled on a timer.
    pub async fn wait_for_message(
        &self,
        pred: impl Fn(&StoredMessage) -> bool,
        timeout: Duration,
    ) -> Option<StoredMessage> {
        self.wait_until(timeout, |inner| {
            inner.messages.values().find(|m| pred(m)).cloned()
        })
        .await
    }

    /// The stored messages for which `pred` holds, once there are `count` of them (now or
    /// later), or `None` after `timeout`. For several messages one interaction makes.
    pub async fn wait_for_messages(
        &self,
        count: usize,
        pred: impl Fn(&StoredMessage) -> bool,
        timeout: Duration,
    ) -> Option<Vec<StoredMessage>> {
        self.wait_until(timeout, |inner| {
            let found: Vec<StoredMessage> = inner
                .messages
                .values()
                .filter(|m| pred(m))
                .cloned()
                .collect();
            (found.len() >= count).then_some(found)
        })
        .await
    }
}
