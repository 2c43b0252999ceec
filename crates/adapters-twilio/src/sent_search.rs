//! Finding a message Twilio accepted although the request that sent it got no answer (a
//! timeout after the request was written): the first page of the Messages list to the number
//! from our sender (`GET .../Messages.json?To=...&From=...`), matched on the body and the
//! creation time here, so that the dispatcher can adopt it instead of sending it twice.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::Channel;
use ports::{
    OutboundMessage, ProviderError, ProviderErrorKind, ProviderReceipt, SentMessageSearch,
};
use reqwest::StatusCode;

use crate::config::TwilioSender;
use crate::provider::{address, read_error, receipt_of, TwilioSmsProvider, NAME};
use crate::wire::{MessagePage, MessageResource};

/// Twilio's own default, said aloud: the messages of one unanswered attempt are among the
/// newest to the number.
const PAGE_SIZE: &str = "50";

#[async_trait]
impl SentMessageSearch for TwilioSmsProvider {
    fn provider(&self) -> &'static str {
        NAME
    }

    /// A message with `message`'s body whose `date_created` lies in the window (a queued
    /// message has no `date_sent` yet). With a messaging service the sending number is
    /// Twilio's choice, so the list is filtered on `To` alone.
    #[tracing::instrument(name = "twilio_find_sent", skip_all, fields(to = %message.to.masked()))]
    async fn find_sent(
        &self,
        message: &OutboundMessage,
        created_after: DateTime<Utc>,
        created_before: DateTime<Utc>,
    ) -> Result<Option<ProviderReceipt>, ProviderError> {
        // A call is no message, and a template's text is Twilio's, not the body we hold: neither
        // can be matched, so the dispatcher sends as it would have.
        if message.channel == Channel::Voice || message.content_sid.is_some() {
            return Ok(None);
        }
        let mut url = self.messages_url();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("To", &address(message.channel, &message.to));
            if let TwilioSender::From(number) = self.sender_for(message.channel) {
                query.append_pair("From", &address(message.channel, &number));
            }
            query.append_pair("PageSize", PAGE_SIZE);
        }
        let response = self.get(url).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(read_error(response).await);
        }
        let body = response
            .bytes()
            .await
            .map_err(|_| unreadable(status, "the answer was cut short"))?;
        let page: MessagePage = serde_json::from_slice(&body)
            .map_err(|_| unreadable(status, "the answer is not a list of messages"))?;
        Ok(page
            .messages
            .into_iter()
            .find(|resource| matches(resource, &message.body, created_after, created_before))
            .and_then(receipt_of))
    }
}

fn matches(
    resource: &MessageResource,
    body: &str,
    created_after: DateTime<Utc>,
    created_before: DateTime<Utc>,
) -> bool {
    let created = resource
        .date_created
        .as_deref()
        .and_then(|date| DateTime::parse_from_rfc2822(date).ok());
    resource.body.as_deref() == Some(body)
        && created.is_some_and(|created| created >= created_after && created <= created_before)
}

/// An answer we cannot use: the caller sends as it would have.
fn unreadable(status: StatusCode, problem: &str) -> ProviderError {
    ProviderError {
        provider: NAME,
        kind: ProviderErrorKind::Permanent,
        http_status: Some(status.as_u16()),
        code: None,
        message: format!("twilio message list: {problem}"),
        more_info: None,
        retry_after: None,
        partly_sent: None,
    }
}
