//! Following messages to their final status in this process: the service's dispatcher runs
//! here while the CLI watches the store, so that `send` and `verify start` need no service.

use std::future::Future;
use std::time::Duration;

use app::dispatch::dispatcher::Dispatcher;
use app::Services;
use domain::{Message, MessageId, MessageStatus};
use tokio::sync::watch;
use tokio::time::Instant;

/// How often the store is read for status changes: a person watching does not notice less.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// Runs `dispatcher` while `work` runs, then stops it and lets its sends in flight finish.
/// While it runs it may also send other due messages of the shared queue, as any instance's
/// dispatcher would: the queue's claims keep that safe.
pub async fn with_dispatcher<T>(dispatcher: Dispatcher, work: impl Future<Output = T>) -> T {
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(dispatcher.run(stopped));
    let output = work.await;
    let _ = stop.send(true);
    let _ = running.await;
    output
}

/// Whether anything more can happen to the message that this process would see: a final
/// status, or `sent` when no delivery reports come (no `PUBLIC_BASE_URL`).
pub fn is_settled(services: &Services, status: MessageStatus) -> bool {
    status.is_terminal()
        || (status == MessageStatus::Sent && services.twilio_status_callbacks().is_none())
}

/// Follows one message until it is settled or `patience` runs out, calling `changed` with
/// each status seen. Returns the message as last seen.
pub async fn follow_one(
    services: &Services,
    id: MessageId,
    patience: Duration,
    mut changed: impl FnMut(&Message),
) -> anyhow::Result<Message> {
    let give_up_at = Instant::now() + patience;
    let mut last_status = None;
    loop {
        let message = services
            .stored_message(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("message {id} is no longer stored"))?;
        if last_status != Some(message.status) {
            last_status = Some(message.status);
            changed(&message);
        }
        if is_settled(services, message.status) || Instant::now() >= give_up_at {
            return Ok(message);
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// Follows many messages until all are settled or `patience` runs out, calling `settled` once
/// per message as it settles. Returns the messages as last seen, settled or not.
pub async fn follow_all(
    services: &Services,
    ids: &[MessageId],
    patience: Duration,
    mut settled: impl FnMut(&Message),
) -> anyhow::Result<Vec<Message>> {
    let give_up_at = Instant::now() + patience;
    let mut open: Vec<MessageId> = ids.to_vec();
    let mut seen = Vec::with_capacity(ids.len());
    loop {
        let mut still_open = Vec::with_capacity(open.len());
        for id in open {
            let Some(message) = services.stored_message(id).await? else {
                anyhow::bail!("message {id} is no longer stored");
            };
            if is_settled(services, message.status) {
                settled(&message);
                seen.push(message);
            } else {
                still_open.push(id);
            }
        }
        open = still_open;
        if open.is_empty() || Instant::now() >= give_up_at {
            for id in open {
                if let Some(message) = services.stored_message(id).await? {
                    seen.push(message);
                }
            }
            return Ok(seen);
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// One line about a message's status, for a person.
pub fn describe(message: &Message) -> String {
    let mut line = format!("{:<12}", message.status.as_str());
    match message.status {
        MessageStatus::Sent | MessageStatus::Delivered => {
            if let Some(sid) = &message.provider_sid {
                line.push_str(&format!("provider_sid={sid}"));
            }
        }
        MessageStatus::Queued if message.attempt_count > 0 => {
            line.push_str(&format!(
                "retry at {} after: {}",
                message.next_attempt_at.format("%H:%M:%S"),
                error_of(message)
            ));
        }
        MessageStatus::Failed | MessageStatus::Undelivered => line.push_str(&error_of(message)),
        _ => {}
    }
    line.trim_end().to_owned()
}

fn error_of(message: &Message) -> String {
    match (&message.error_code, &message.error_message) {
        (Some(code), Some(text)) => format!("{code}: {text}"),
        (Some(code), None) => code.clone(),
        (None, Some(text)) => text.clone(),
        (None, None) => "no reason given".to_owned(),
    }
}
