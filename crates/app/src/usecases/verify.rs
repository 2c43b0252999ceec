//! The two-factor use cases: start (or resend) a verification, check a code, cancel.

use chrono::{DateTime, Utc};
use domain::fraud::CodeEvent;
use domain::{
    AppHash, Brand, Channel, CheckOutcome, CheckRefusal, CodeHash, CodeLength, Message, NewMessage,
    PhoneNumber, Priority, ResendRefusal, Transaction, Verification, VerificationCode,
    VerificationId, VerificationPolicy, VerificationStatus, WorkflowPlan,
};
use ports::{StoreError, VerificationFilter};
use template::{
    spoken_digits, RenderError, TWO_FACTOR_AUTH, TWO_FACTOR_AUTH_TRANSACTION,
    TWO_FACTOR_AUTH_TRANSACTION_VOICE, TWO_FACTOR_AUTH_VOICE,
};

use crate::observability::metrics::VerificationEvent;
use crate::usecases::fraud::{ClientSignals, FraudRefusal, ScreenError, Screened};
use crate::usecases::guards::{LimitScope, Refusal};
use crate::usecases::messaging::new_message;
use crate::usecases::workflows::step_request;
use crate::usecases::Services;

#[derive(Debug, Clone)]
pub struct StartRequest {
    pub to: PhoneNumber,
    pub channel: Channel,
    pub locale: Option<String>,
    pub code_length: Option<CodeLength>,
    /// An Android app's hash: its SMS end with it for the SMS Retriever API.
    pub app_hash: Option<AppHash>,
    /// What the calling service says of the person asking (address, user, trust).
    pub client: ClientSignals,
    /// The brand the code's text names instead of the configured one (`VERIFY_BRAND`): a
    /// Twilio Verify service's friendly name.
    pub brand: Option<Brand>,
    /// The channels after `channel` to fall back on, and when (`channels`,
    /// `fallback_after_seconds`); its first channel is `channel`. `None`: `channel` alone.
    pub workflow: Option<WorkflowPlan>,
    /// The payment the code confirms (PSD2): its texts name it and its hash binds it. A
    /// pending verification of the number for another transaction (or none) is canceled and a
    /// new one started, so that no code confirms a payment the client no longer asks about.
    pub transaction: Option<Transaction>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("a new code can be sent in {} seconds", retry_after.num_seconds().max(1))]
    TooSoon { retry_after: chrono::TimeDelta },
    #[error("no more codes can be sent for this verification; start again once it expires")]
    TooManySends,
    /// Nothing could carry a code on the channel: no provider sends on it, or WhatsApp has no
    /// approved template for the language. Nothing was counted or stored.
    #[error("{channel} is not offered: {reason}")]
    ChannelNotOffered { channel: Channel, reason: String },
    /// The code confirms a transaction, and the channel's texts cannot name it (see
    /// `Channel::carries_transaction_details`). Nothing was counted or stored.
    #[error("{channel} cannot carry a transaction's amount and payee: its codes go out in an approved template whose text is fixed; use sms or voice")]
    ChannelCannotCarryTransaction { channel: Channel },
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The fraud guard refused the code.
    #[error(transparent)]
    Fraud(#[from] FraudRefusal),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no such verification")]
    NotFound,
    #[error("the verification is already {0}")]
    Ended(VerificationStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("no such verification")]
    NotFound,
    /// The verification no longer takes checks; nothing about this one approved it.
    #[error(transparent)]
    Refused(#[from] CheckRefusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A verification started or resent, with the message carrying its newest code.
#[derive(Debug)]
pub struct Started {
    pub verification: Verification,
    pub message: Message,
    /// `false` when a pending verification was reused for a new code.
    pub created: bool,
}

impl Started {
    /// The locale of the translation the code message was written from (`fr` for a request's
    /// `fr-CA`, `en` for a locale without a translation); `None` for the template without a
    /// locale, which an operator who overrides it without translations gets.
    pub fn locale(&self) -> Option<&str> {
        if let Some(locale) = self.message.locale.as_deref() {
            return Some(locale);
        }
        let template = self.message.template.as_deref()?;
        [TWO_FACTOR_AUTH, TWO_FACTOR_AUTH_TRANSACTION]
            .into_iter()
            .find_map(|name| template.strip_prefix(name)?.strip_prefix('.'))
    }
}

/// How a code goes out on its channel, decided before anything is counted or stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CodeDelivery {
    /// An SMS, or a free-text message: the `two-factor-auth` text.
    Text,
    /// A call speaking the `two-factor-auth-voice` text.
    Call,
    /// WhatsApp's approved template for `locale`, the code its one variable.
    WhatsappTemplate { locale: String, content_sid: String },
}

impl From<ScreenError> for StartError {
    fn from(error: ScreenError) -> Self {
        match error {
            ScreenError::Refused(refusal) => StartError::Fraud(refusal),
            ScreenError::Store(error) => StartError::Store(error),
        }
    }
}

/// A code text's data with the request's own brand, when it has one: the templates' data wins
/// over their default `brand` (the configured one).
fn with_brand(mut data: serde_json::Value, brand: Option<&Brand>) -> serde_json::Value {
    if let (Some(brand), Some(fields)) = (brand, data.as_object_mut()) {
        fields.insert(template::BRAND.to_owned(), brand.as_str().into());
    }
    data
}

/// A code text's data with the transaction it confirms, when it confirms one: the amount as
/// the client wrote it, the currency and the payee.
fn with_transaction(
    mut data: serde_json::Value,
    transaction: Option<&Transaction>,
) -> serde_json::Value {
    if let (Some(transaction), Some(fields)) = (transaction, data.as_object_mut()) {
        fields.insert("amount".to_owned(), transaction.amount.as_str().into());
        fields.insert("currency".to_owned(), transaction.currency.as_str().into());
        fields.insert("payee".to_owned(), transaction.payee.as_str().into());
    }
    data
}

impl Services {
    /// Starts a verification, or sends a new code for the pending one of the same number and
    /// API key (whose earlier codes stay valid: SMS arrive late and users type the first code
    /// they see). Counted in the metrics: started, resent, or which limit refused it.
    pub async fn start_verification(
        &self,
        api_key: &str,
        request: StartRequest,
    ) -> Result<Started, StartError> {
        let started = self.start(api_key, request).await;
        match &started {
            Ok(started) if started.created => self.metrics.verification(VerificationEvent::Started),
            Ok(_) => self.metrics.verification(VerificationEvent::Resent),
            Err(StartError::TooSoon { .. }) => self.metrics.rate_limit_refused("resend_interval"),
            Err(StartError::TooManySends) => self.metrics.rate_limit_refused("max_sends"),
            Err(StartError::Refused(Refusal::RateLimited { scope, .. })) => {
                self.metrics.rate_limit_refused(match scope {
                    LimitScope::Number => "per_number",
                    LimitScope::ApiKey => "per_api_key",
                });
            }
            Err(_) => {}
        }
        started
    }

    async fn start(&self, api_key: &str, request: StartRequest) -> Result<Started, StartError> {
        self.guards.check_destination(&request.to)?;
        let now = self.clock.now();
        let policy = VerificationPolicy {
            code_length: request
                .code_length
                .unwrap_or(self.verification_policy.code_length),
            ..self.verification_policy
        };
        let superseded = match self
            .verifications
            .find_pending(&request.to, api_key, now)
            .await?
        {
            Some(pending) if pending.transaction == request.transaction => {
                return self.resend(api_key, pending, &request, &policy, now).await;
            }
            pending => pending,
        };

        let delivery = self.code_delivery(&request, request.channel)?;
        self.offers_workflow(&request)?;
        let mut screened = self
            .fraud_guard
            .screen(api_key, &request.to, &request.client, now)
            .await?;
        let mut verification = Verification {
            risk: Some(screened.decision.clone()),
            transaction: request.transaction.clone(),
            ..Verification::start(
                request.to.clone(),
                request.channel,
                api_key.to_owned(),
                &policy,
                now,
            )
        };
        self.admit(api_key, &verification.to, &screened, now)
            .await?;
        let code = self.new_code(&verification.to, policy.code_length);
        let message = self.code_message(api_key, &verification, &code, &request, &delivery, now)?;
        self.fraud_guard
            .charge(
                &mut screened,
                api_key,
                &verification.to,
                message.segments,
                message.id,
                now,
            )
            .await?;
        verification.risk = Some(screened.decision.clone());
        let message_id = message.id;
        // Before the verification: none is ever stored without the rest of its workflow.
        if let Some(plan) = request.workflow.as_ref().filter(|plan| plan.has_fallback()) {
            self.workflows
                .start_workflow(&plan.start(
                    verification.id,
                    message.id,
                    step_request(&request, &policy),
                    now,
                ))
                .await?;
        }
        if let Some(superseded) = superseded {
            // Its codes confirm another transaction (or none): they approve nothing any more.
            self.verifications
                .conclude(superseded.id, VerificationStatus::Canceled, now)
                .await?;
            tracing::info!(verification_id = %superseded.id, "verification canceled: a start for another transaction replaces it");
        }
        // The guard's finding (if any) is written with the verification, the code's count
        // beside it.
        let finding = self
            .fraud_guard
            .finding(&screened, api_key, &verification, now);
        let (message, ()) = tokio::join!(
            self.verifications.create(
                &verification,
                self.code_hash(&verification, &code),
                message,
                finding
            ),
            self.fraud_guard.count(CodeEvent::Sent, &screened, now)
        );
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                self.fraud_guard.release_after(message_id, &error).await;
                return Err(error.into());
            }
        };
        self.dispatcher_wake.notify_one();
        tracing::info!(verification_id = %verification.id, to = %verification.to.masked(), "verification started");
        Ok(Started {
            verification,
            message,
            created: true,
        })
    }

    async fn resend(
        &self,
        api_key: &str,
        pending: Verification,
        request: &StartRequest,
        policy: &VerificationPolicy,
        now: DateTime<Utc>,
    ) -> Result<Started, StartError> {
        pending
            .may_resend(policy, now)
            .map_err(|refusal| match refusal {
                ResendRefusal::TooSoon { retry_after } => StartError::TooSoon { retry_after },
                // `find_pending` only returns pending verifications; one that ended in between is
                // refused like one that has used up its sends.
                ResendRefusal::TooManySends | ResendRefusal::NotPending(_) => {
                    StartError::TooManySends
                }
            })?;
        // On the channel asked for now ("call me instead"), which may not be the first one's.
        let delivery = self.code_delivery(request, request.channel)?;
        self.offers_workflow(request)?;
        let mut screened = self
            .fraud_guard
            .screen(api_key, &pending.to, &request.client, now)
            .await?;
        self.admit(api_key, &pending.to, &screened, now).await?;
        let code = self.new_code(&pending.to, policy.code_length);
        let on_channel = Verification {
            channel: request.channel,
            ..pending.clone()
        };
        let message = self.code_message(api_key, &on_channel, &code, request, &delivery, now)?;
        self.fraud_guard
            .charge(
                &mut screened,
                api_key,
                &pending.to,
                message.segments,
                message.id,
                now,
            )
            .await?;
        let message_id = message.id;
        // The guard's finding (if any) is written with the code, only if the code is stored.
        let finding = self.fraud_guard.finding(&screened, api_key, &pending, now);
        let (added, ()) = tokio::join!(
            self.verifications.add_code(
                pending.id,
                self.code_hash(&pending, &code),
                message,
                now,
                now - policy.resend_interval,
                finding,
            ),
            self.fraud_guard.count(CodeEvent::Sent, &screened, now)
        );
        let added = match added {
            Ok(added) => added,
            Err(error) => {
                self.fraud_guard.release_after(message_id, &error).await;
                return Err(error.into());
            }
        };
        // Another request for the same number won the race to resend.
        let Some((verification, message)) = added else {
            self.fraud_guard.release(message_id).await;
            return Err(StartError::TooSoon {
                retry_after: policy.resend_interval,
            });
        };
        self.dispatcher_wake.notify_one();
        self.follow_resend(&verification, &message, now).await;
        tracing::info!(verification_id = %verification.id, send_count = verification.send_count, "verification code resent");
        Ok(Started {
            verification,
            message,
            created: false,
        })
    }

    /// Counts a code the fraud guard let through against the send limits; one they refuse is
    /// counted as refused for the guard too, as traffic that goes on.
    pub(super) async fn admit(
        &self,
        api_key: &str,
        to: &PhoneNumber,
        screened: &Screened,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        let admitted = self.guards.admit(api_key, to, now).await;
        if admitted.is_err() {
            self.fraud_guard
                .count(CodeEvent::Refused, screened, now)
                .await;
        }
        admitted
    }

    /// A random code, or a test number's fixed one.
    pub(super) fn new_code(&self, to: &PhoneNumber, length: CodeLength) -> VerificationCode {
        match self.test_numbers.code_for(to) {
            Some(code) => {
                tracing::warn!(to = %to.masked(), "test number: its fixed code is used (TEST_NUMBERS)");
                code.clone()
            }
            None => self.code_generator.generate(length),
        }
    }

    /// The hash a code of `verification` is stored as: bound to the transaction it confirms.
    pub(super) fn code_hash(
        &self,
        verification: &Verification,
        code: &VerificationCode,
    ) -> CodeHash {
        self.hasher
            .hash(verification.id, code, verification.transaction.as_ref())
    }

    /// How a code would go out on `channel` in `locale`, or why it cannot: no provider sends
    /// on the channel, the channel cannot name the request's transaction, or WhatsApp has no
    /// approved template for the locale, its language or English.
    pub(super) fn code_delivery(
        &self,
        request: &StartRequest,
        channel: Channel,
    ) -> Result<CodeDelivery, StartError> {
        let locale = self
            .code_texts
            .locale_for(request.locale.as_deref(), &request.to);
        let not_offered = |reason: &str| StartError::ChannelNotOffered {
            channel,
            reason: reason.to_owned(),
        };
        if request.transaction.is_some() && !channel.carries_transaction_details() {
            return Err(StartError::ChannelCannotCarryTransaction { channel });
        }
        if !self.channels.offers(channel) {
            return Err(not_offered(match channel {
                Channel::Voice => {
                    "no provider configured can place calls (Twilio with TWILIO_VOICE_FROM can)"
                }
                Channel::Sms | Channel::Whatsapp => "no provider configured can send on it",
            }));
        }
        Ok(match channel {
            Channel::Sms => CodeDelivery::Text,
            Channel::Voice => CodeDelivery::Call,
            Channel::Whatsapp => {
                let (locale, content_sid) = self
                    .whatsapp_templates
                    .resolve(Some(&locale))
                    .ok_or_else(|| {
                        not_offered(&format!(
                            "WhatsApp sends codes only with an approved template, and \
                             TWILIO_WHATSAPP_CONTENT_SIDS has none for {}, its language or en",
                            locale
                        ))
                    })?;
                CodeDelivery::WhatsappTemplate {
                    locale: locale.to_owned(),
                    content_sid: content_sid.to_owned(),
                }
            }
        })
    }

    pub(super) fn code_message(
        &self,
        api_key: &str,
        verification: &Verification,
        code: &VerificationCode,
        request: &StartRequest,
        delivery: &CodeDelivery,
        now: DateTime<Utc>,
    ) -> Result<NewMessage, RenderError> {
        let locale = self
            .code_texts
            .locale_for(request.locale.as_deref(), &verification.to);
        // The verification's, not the request's: a resend names what its codes are bound to.
        let transaction = verification.transaction.as_ref();
        // Whole minutes, rounded up: "expires in 10 minutes" rather than "in 9".
        let remaining_seconds = (verification.expires_at - now).num_seconds().max(0);
        let expiry_minutes = (remaining_seconds + 59) / 60;
        let (template, body, message_locale, content_sid) = match delivery {
            CodeDelivery::Text => {
                let name = match transaction {
                    Some(_) => TWO_FACTOR_AUTH_TRANSACTION,
                    None => TWO_FACTOR_AUTH,
                };
                let template = self.resolve(name, Some(&locale))?;
                let body = self.templates.render(
                    &template,
                    &with_transaction(
                        with_brand(
                            serde_json::json!({ "code": code.expose(), "expiryMinutes": expiry_minutes }),
                            request.brand.as_ref(),
                        ),
                        transaction,
                    ),
                )?;
                let body = self.code_texts.finish(
                    body,
                    code.expose(),
                    verification.channel,
                    request.app_hash.as_ref(),
                );
                (Some(template), body, None, None)
            }
            CodeDelivery::Call => {
                let name = match transaction {
                    Some(_) => TWO_FACTOR_AUTH_TRANSACTION_VOICE,
                    None => TWO_FACTOR_AUTH_VOICE,
                };
                let template = self.resolve(name, Some(&locale))?;
                let body = self.templates.render(
                    &template,
                    &with_transaction(
                        with_brand(
                            serde_json::json!({
                                "code_digits": spoken_digits(code.expose()),
                                "expiryMinutes": expiry_minutes,
                            }),
                            request.brand.as_ref(),
                        ),
                        transaction,
                    ),
                )?;
                let spoken_in = locale_of(&template, name);
                (Some(template), body, spoken_in, None)
            }
            CodeDelivery::WhatsappTemplate {
                locale,
                content_sid,
            } => (
                None,
                serde_json::json!({ "1": code.expose() }).to_string(),
                Some(locale.clone()),
                Some(content_sid.clone()),
            ),
        };
        let mut message = new_message(
            verification.to.clone(),
            verification.channel,
            template,
            body,
            api_key,
            now,
        );
        if verification.channel == Channel::Voice {
            // A call is no text: nothing is counted in segments.
            message.segments = 0;
        }
        Ok(NewMessage {
            priority: Priority::Verification,
            verification_id: Some(verification.id),
            // A code is a secret, whatever the template says.
            sensitive: true,
            // A code that can no longer be checked must not be delivered.
            send_before: Some(verification.expires_at),
            locale: message_locale,
            content_sid,
            ..message
        })
    }

    /// The most specific translation of `name` for `locale`.
    fn resolve(&self, name: &str, locale: Option<&str>) -> Result<String, RenderError> {
        self.templates
            .resolve(name, locale)
            .ok_or_else(|| RenderError::UnknownTemplate(name.to_owned()))
    }

    /// The verifications `filter` selects, newest first: one API key's, or every key's for
    /// an operator's search (its `api_key` `None`).
    pub async fn list_verifications(
        &self,
        filter: &VerificationFilter,
    ) -> Result<Vec<Verification>, StoreError> {
        self.verifications.list(filter).await
    }

    pub async fn verification(
        &self,
        api_key: &str,
        id: VerificationId,
    ) -> Result<Option<Verification>, StoreError> {
        Ok(self
            .verifications
            .get(id)
            .await?
            .filter(|verification| verification.api_key == api_key))
    }

    /// Checks a code. Each counted check uses up one attempt, atomically, so that concurrent
    /// guesses cannot exceed the limit. Only the check whose approval is recorded answers
    /// `approved`; a check the verification no longer takes is refused, so that no other answer
    /// can be read as an approval. Counted in the metrics: approved, or failed.
    pub async fn check_verification(
        &self,
        api_key: &str,
        id: VerificationId,
        code: &VerificationCode,
    ) -> Result<CheckOutcome, CheckError> {
        self.check_transaction_verification(api_key, id, code, None)
            .await
    }

    /// Checks a code presented with the transaction it confirms (PSD2): it approves only when
    /// the transaction is the one the code was sent for (amounts compared as numbers). Another
    /// transaction, or none for a code that confirms one, is a wrong code: the check counts.
    pub async fn check_transaction_verification(
        &self,
        api_key: &str,
        id: VerificationId,
        code: &VerificationCode,
        transaction: Option<&Transaction>,
    ) -> Result<CheckOutcome, CheckError> {
        let checked = self.check(api_key, id, code, transaction).await;
        self.count_check(&checked);
        checked
    }

    /// Checks a code against the pending verification of `to` started by this API key, as
    /// Twilio Verify's VerificationCheck does. No pending verification (none started, or it
    /// ended) is not found.
    pub async fn check_verification_of(
        &self,
        api_key: &str,
        to: &PhoneNumber,
        code: &VerificationCode,
    ) -> Result<CheckOutcome, CheckError> {
        self.check_transaction_verification_of(api_key, to, code, None)
            .await
    }

    /// [`Services::check_verification_of`] with the transaction the code confirms, as
    /// [`Services::check_transaction_verification`] checks it.
    pub async fn check_transaction_verification_of(
        &self,
        api_key: &str,
        to: &PhoneNumber,
        code: &VerificationCode,
        transaction: Option<&Transaction>,
    ) -> Result<CheckOutcome, CheckError> {
        let checked = match self
            .verifications
            .find_pending(to, api_key, self.clock.now())
            .await
        {
            Ok(Some(pending)) => self.check(api_key, pending.id, code, transaction).await,
            Ok(None) => Err(CheckError::NotFound),
            Err(error) => Err(error.into()),
        };
        self.count_check(&checked);
        checked
    }

    /// A check that was counted, or refused by a verification that no longer takes checks.
    fn count_check(&self, checked: &Result<CheckOutcome, CheckError>) {
        let event = match checked {
            Ok(outcome) if outcome.valid => VerificationEvent::Approved,
            Ok(_) | Err(CheckError::Refused(_)) => VerificationEvent::Failed,
            Err(CheckError::NotFound | CheckError::Store(_)) => return,
        };
        self.metrics.verification(event);
    }

    async fn check(
        &self,
        api_key: &str,
        id: VerificationId,
        code: &VerificationCode,
        transaction: Option<&Transaction>,
    ) -> Result<CheckOutcome, CheckError> {
        let now = self.clock.now();
        // Another client's verification is not counted, and not found by `refused_check`.
        let Some((counted, hashes)) = self.verifications.count_check(id, api_key, now).await?
        else {
            return Err(self.refused_check(api_key, id, now).await?.into());
        };
        if self.test_numbers.code_for(&counted.to).is_some() {
            tracing::warn!(verification_id = %id, to = %counted.to.masked(), "test number: code checked (TEST_NUMBERS)");
        }
        let matches = self.hasher.matches_any(id, code, transaction, &hashes);
        let outcome = counted.outcome_of_counted_check(matches);
        // The guard's conversion: a first check shows a person is there, an approval more.
        // Only the check that records the approval counts it.
        let approves = outcome.status == VerificationStatus::Approved;
        if !approves {
            self.fraud_guard.count_check(&counted, false).await;
        }
        match outcome.status {
            VerificationStatus::Approved => {
                if !self.verifications.conclude(id, outcome.status, now).await? {
                    // Approved by a concurrent check, canceled or expired first: this check
                    // approves nothing and is answered as one that came after.
                    self.fraud_guard.count_check(&counted, false).await;
                    return Err(self.refused_check(api_key, id, now).await?.into());
                }
                self.fraud_guard.count_check(&counted, true).await;
                // Which attempt approved, for the verification's `attempts`: the approval
                // itself is recorded already, so a failure here is only logged.
                if let Err(error) = self
                    .workflows
                    .record_approval(id, &self.hasher.hash(id, code, transaction), now)
                    .await
                {
                    tracing::warn!(verification_id = %id, %error, "cannot mark the code that approved");
                }
                tracing::info!(verification_id = %id, "verification approved");
            }
            // This check used the last attempt, and says so even when an earlier counted check
            // with the right code records its approval first (or did): that one's answer is the
            // only approval.
            VerificationStatus::MaxAttemptsReached => {
                self.verifications.conclude(id, outcome.status, now).await?;
            }
            _ => {}
        }
        Ok(outcome)
    }

    /// Cancels a pending verification: no code of it approves any more, and its codes not yet
    /// sent never will be. Canceling a canceled verification changes nothing.
    pub async fn cancel_verification(
        &self,
        api_key: &str,
        id: VerificationId,
    ) -> Result<Verification, CancelError> {
        let now = self.clock.now();
        let verification = self
            .verification(api_key, id)
            .await?
            .ok_or(CancelError::NotFound)?;
        let seen = verification.status_at(now);
        if seen == VerificationStatus::Pending
            && self
                .verifications
                .conclude(id, VerificationStatus::Canceled, now)
                .await?
        {
            tracing::info!(verification_id = %id, "verification canceled");
            return Ok(Verification {
                status: VerificationStatus::Canceled,
                ..verification
            });
        }
        // Written down as expired, which it is, rather than canceled.
        if seen == VerificationStatus::Expired && verification.status == VerificationStatus::Pending
        {
            self.verifications
                .conclude(id, VerificationStatus::Expired, now)
                .await?;
        }
        // Ended before, or concurrently.
        let latest = self
            .verification(api_key, id)
            .await?
            .ok_or(CancelError::NotFound)?;
        match latest.status_at(now) {
            VerificationStatus::Canceled => Ok(latest),
            other => Err(CancelError::Ended(other)),
        }
    }

    /// Why the store would not count a check, from the verification as it is now (a
    /// concurrent check may just have concluded it).
    async fn refused_check(
        &self,
        api_key: &str,
        id: VerificationId,
        now: DateTime<Utc>,
    ) -> Result<CheckRefusal, CheckError> {
        let latest = self
            .verification(api_key, id)
            .await?
            .ok_or(CheckError::NotFound)?;
        // The store counts every check that a pending verification with attempts left admits;
        // were one ever refused all the same, it would still not be counted: nothing is written.
        let Some(refusal) = latest.check_refusal(now) else {
            return Ok(CheckRefusal::MaxAttemptsReached);
        };
        // Write down what readers already see (expired, out of attempts), so reports count it.
        if latest.status == VerificationStatus::Pending {
            self.verifications
                .conclude(id, refusal.status(), now)
                .await?;
        }
        Ok(refusal)
    }
}

/// The locale of a translation of `name` (`fr` for `two-factor-auth-voice.fr`); `None` for
/// the template itself.
fn locale_of(template: &str, name: &str) -> Option<String> {
    template
        .strip_prefix(name)?
        .strip_prefix('.')
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeDelta, TimeZone};
    use domain::fraud::{Action, CodeCounts, Mode, Policies, Policy, ReasonCode, SignalScope};
    use domain::CountryAllowList;
    use ports::{
        Admission, MockClock, MockCodeGenerator, MockFraudStore, MockMessageStore, MockRateLimiter,
        MockVerificationStore,
    };
    use secrecy::SecretString;

    use super::*;
    use crate::usecases::codes::CodeHasher;
    use crate::usecases::fraud::FraudConfig;
    use crate::usecases::guards::GuardConfig;
    use crate::usecases::StorePorts;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    fn hasher() -> CodeHasher {
        CodeHasher::new(SecretString::from("p".repeat(32)))
    }

    fn pending() -> Verification {
        Verification::start(
            PhoneNumber::parse("+15551234567").unwrap(),
            Channel::Sms,
            "auth".into(),
            &VerificationPolicy::default(),
            now() - TimeDelta::minutes(1),
        )
    }

    fn code() -> VerificationCode {
        VerificationCode::parse("123456").unwrap()
    }

    /// A limiter with room for everything and no history.
    fn open_limiter() -> MockRateLimiter {
        let mut limiter = MockRateLimiter::new();
        limiter
            .expect_acquire()
            .returning(|_, _| Ok(Admission::Admitted));
        limiter
    }

    /// The guard's store with nothing in it, taking every count and log.
    pub(crate) fn quiet_fraud_store() -> MockFraudStore {
        let mut store = MockFraudStore::new();
        store.expect_policy_modes().returning(|| Ok(vec![]));
        store.expect_blocks().returning(|_| Ok(vec![]));
        store.expect_safe_list().returning(|| Ok(vec![]));
        store.expect_code_counts().returning(|_, _| Ok(vec![]));
        store.expect_count_code().returning(|_, _, _| Ok(()));
        store.expect_log_decision().returning(|_| Ok(()));
        store
    }

    fn services(verifications: MockVerificationStore) -> Services {
        guarded_services(verifications, open_limiter(), GuardConfig::default())
    }

    fn guarded_services(
        verifications: MockVerificationStore,
        limiter: MockRateLimiter,
        guards: GuardConfig,
    ) -> Services {
        fraud_guarded_services(
            verifications,
            limiter,
            guards,
            quiet_fraud_store(),
            FraudConfig::default(),
        )
    }

    fn fraud_guarded_services(
        verifications: MockVerificationStore,
        limiter: MockRateLimiter,
        guards: GuardConfig,
        fraud: MockFraudStore,
        fraud_config: FraudConfig,
    ) -> Services {
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        let mut codes = MockCodeGenerator::new();
        codes.expect_generate().returning(|_| code());
        let stores = StorePorts {
            messages: Arc::new(MockMessageStore::new()),
            verifications: Arc::new(verifications),
            reports: Arc::new(ports::MockMessageReports::new()),
            health: Arc::new(ports::MockStoreHealth::new()),
            limiter: Arc::new(limiter),
            fraud: Arc::new(fraud),
            verify_services: Arc::new(ports::MockVerifyServiceStore::new()),
            webhooks: Arc::new(ports::MockWebhookStore::new()),
            workflows: Arc::new(no_workflows()),
            lifecycle: Arc::new(ports::MockDataLifecycle::new()),
        };
        Services::builder(
            stores,
            Arc::new(template::Templates::built_in().unwrap()),
            hasher(),
        )
        .clock(Arc::new(clock))
        .code_generator(Arc::new(codes))
        .api_keys(crate::usecases::auth::ApiKeys::generate())
        .guards(guards)
        .fraud_guard(fraud_config)
        .build()
    }

    /// Verifications without a workflow; the code that approves is marked.
    fn no_workflows() -> ports::MockWorkflowStore {
        let mut workflows = ports::MockWorkflowStore::new();
        workflows.expect_workflow().returning(|_| Ok(None));
        workflows
            .expect_record_approval()
            .returning(|_, _, _| Ok(()));
        workflows
    }

    fn request() -> StartRequest {
        StartRequest {
            to: PhoneNumber::parse("+15551234567").unwrap(),
            channel: Channel::Sms,
            locale: None,
            code_length: None,
            app_hash: None,
            client: ClientSignals::default(),
            brand: None,
            workflow: None,
            transaction: None,
        }
    }

    #[tokio::test]
    async fn a_new_verification_queues_the_code_first_in_line_and_only_until_expiry() {
        let mut store = MockVerificationStore::new();
        store.expect_find_pending().returning(|_, _, _| Ok(None));
        store
            .expect_create()
            .times(1)
            .returning(|verification, hash, message, _| {
                assert!(hasher().matches_any(verification.id, &code(), None, &[hash]));
                assert_eq!(
                    message.body,
                    "Your Smarter Firms verification code is: 123456. This code will expire in 10 minutes. Do not share this code with anyone."
                );
                assert_eq!(message.priority, domain::Priority::Verification);
                assert_eq!(message.verification_id, Some(verification.id));
                assert_eq!(message.send_before, Some(verification.expires_at));
                assert_eq!(verification.expires_at, now() + TimeDelta::minutes(10));
                Ok(message.into_queued())
            });
        let started = services(store)
            .start_verification("auth", request())
            .await
            .unwrap();
        assert!(started.created);
    }

    #[tokio::test]
    async fn a_pending_verification_is_reused_for_a_new_code() {
        let existing_id = pending().id;
        let mut store = MockVerificationStore::new();
        store
            .expect_find_pending()
            .returning(move |_, _, _| Ok(Some(pending_with_id(existing_id))));
        store.expect_create().never();
        store.expect_add_code().times(1).returning(
            move |id, _, message, _, last_sent_before, _| {
                assert_eq!(id, existing_id);
                assert_eq!(last_sent_before, now() - TimeDelta::seconds(30));
                // Nine minutes left of the verification's ten.
                assert!(
                    message.body.contains("expire in 9 minutes"),
                    "{}",
                    message.body
                );
                let mut verification = pending_with_id(existing_id);
                verification.send_count = 2;
                Ok(Some((verification, message.into_queued())))
            },
        );
        let started = services(store)
            .start_verification("auth", request())
            .await
            .unwrap();
        assert!(!started.created);
        assert_eq!(started.verification.send_count, 2);
    }

    fn pending_with_id(id: VerificationId) -> Verification {
        Verification { id, ..pending() }
    }

    #[tokio::test]
    async fn a_resend_within_thirty_seconds_is_refused() {
        let mut store = MockVerificationStore::new();
        store.expect_find_pending().returning(|_, _, _| {
            Ok(Some(Verification {
                last_sent_at: now() - TimeDelta::seconds(10),
                ..pending()
            }))
        });
        store.expect_add_code().never();
        let error = services(store)
            .start_verification("auth", request())
            .await
            .unwrap_err();
        assert!(
            matches!(error, StartError::TooSoon { retry_after } if retry_after == TimeDelta::seconds(20)),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn the_right_code_approves() {
        let verification = pending();
        let id = verification.id;
        let mut store = MockVerificationStore::new();
        store.expect_count_check().returning(move |_, _, _| {
            let counted = Verification {
                check_count: 1,
                ..pending_with_id(id)
            };
            Ok(Some((counted, vec![hasher().hash(id, &code(), None)])))
        });
        store
            .expect_conclude()
            .withf(|_, status, _| *status == VerificationStatus::Approved)
            .times(1)
            .returning(|_, _, _| Ok(true));
        let outcome = services(store)
            .check_verification("auth", id, &code())
            .await
            .unwrap();
        assert_eq!(outcome.status, VerificationStatus::Approved);
        assert!(outcome.valid);
    }

    #[tokio::test]
    async fn a_right_code_that_loses_the_race_to_approve_is_refused_as_ended() {
        let id = pending().id;
        let mut store = MockVerificationStore::new();
        // What the check reads after losing: the winner's approval.
        store.expect_get().returning(move |_| {
            Ok(Some(Verification {
                status: VerificationStatus::Approved,
                ..pending_with_id(id)
            }))
        });
        store.expect_count_check().returning(move |_, _, _| {
            Ok(Some((
                pending_with_id(id),
                vec![hasher().hash(id, &code(), None)],
            )))
        });
        store
            .expect_conclude()
            .times(1)
            .returning(|_, _, _| Ok(false));
        let error = services(store)
            .check_verification("auth", id, &code())
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                CheckError::Refused(CheckRefusal::Ended(VerificationStatus::Approved))
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn the_wrong_code_that_uses_the_last_attempt_says_so_though_an_approval_was_recorded_first(
    ) {
        let id = pending().id;
        let mut store = MockVerificationStore::new();
        store.expect_get().returning(move |_| {
            Ok(Some(Verification {
                status: VerificationStatus::Approved,
                check_count: 5,
                ..pending_with_id(id)
            }))
        });
        store.expect_count_check().returning(move |_, _, _| {
            let counted = Verification {
                check_count: 5,
                ..pending_with_id(id)
            };
            Ok(Some((counted, vec![hasher().hash(id, &code(), None)])))
        });
        // An earlier counted check with the right code has recorded its approval.
        store
            .expect_conclude()
            .withf(|_, status, _| *status == VerificationStatus::MaxAttemptsReached)
            .times(1)
            .returning(|_, _, _| Ok(false));
        let wrong = VerificationCode::parse("654321").unwrap();
        let outcome = services(store)
            .check_verification("auth", id, &wrong)
            .await
            .unwrap();
        assert_eq!(
            outcome,
            CheckOutcome {
                status: VerificationStatus::MaxAttemptsReached,
                valid: false,
                attempts_left: 0
            }
        );
    }

    #[tokio::test]
    async fn a_check_after_the_last_attempt_is_refused_and_records_the_lock() {
        let id = pending().id;
        let mut store = MockVerificationStore::new();
        store.expect_get().returning(move |_| {
            Ok(Some(Verification {
                check_count: 5,
                ..pending_with_id(id)
            }))
        });
        store.expect_count_check().returning(|_, _, _| Ok(None));
        store
            .expect_conclude()
            .withf(|_, status, _| *status == VerificationStatus::MaxAttemptsReached)
            .times(1)
            .returning(|_, _, _| Ok(true));
        let error = services(store)
            .check_verification("auth", id, &code())
            .await
            .unwrap_err();
        assert!(
            matches!(error, CheckError::Refused(CheckRefusal::MaxAttemptsReached)),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_check_after_expiry_records_and_answers_expired() {
        let id = pending().id;
        let mut store = MockVerificationStore::new();
        store.expect_get().returning(move |_| {
            Ok(Some(Verification {
                expires_at: now() - TimeDelta::seconds(1),
                ..pending_with_id(id)
            }))
        });
        store.expect_count_check().returning(|_, _, _| Ok(None));
        store
            .expect_conclude()
            .withf(|_, status, _| *status == VerificationStatus::Expired)
            .times(1)
            .returning(|_, _, _| Ok(true));
        let error = services(store)
            .check_verification("auth", id, &code())
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                CheckError::Refused(CheckRefusal::Ended(VerificationStatus::Expired))
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn another_clients_verification_is_not_found() {
        let id = pending().id;
        let mut store = MockVerificationStore::new();
        store
            .expect_get()
            .returning(move |_| Ok(Some(pending_with_id(id))));
        // The store counts no check of another client's verification.
        store
            .expect_count_check()
            .withf(|_, api_key, _| api_key == "billing")
            .times(1)
            .returning(|_, _, _| Ok(None));
        store.expect_conclude().never();
        let error = services(store)
            .check_verification("billing", id, &code())
            .await
            .unwrap_err();
        assert!(matches!(error, CheckError::NotFound));
    }

    #[tokio::test]
    async fn a_number_outside_the_allowed_countries_is_refused_before_anything_is_stored() {
        let mut store = MockVerificationStore::new();
        store.expect_find_pending().never();
        store.expect_create().never();
        let mut limiter = MockRateLimiter::new();
        limiter.expect_acquire().never();
        let guards = GuardConfig {
            allowed_countries: CountryAllowList::parse("GB,FR").unwrap(),
            ..GuardConfig::default()
        };
        let error = guarded_services(store, limiter, guards)
            .start_verification("auth", request())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, StartError::Refused(Refusal::CountryNotAllowed(refused)) if refused.destination == "US"),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_full_send_limit_refuses_the_code_and_queues_nothing() {
        let mut store = MockVerificationStore::new();
        store.expect_find_pending().returning(|_, _, _| Ok(None));
        store.expect_create().never();
        let mut limiter = MockRateLimiter::new();
        limiter
            .expect_acquire()
            .withf(|limits, _| {
                limits
                    .iter()
                    .map(|limit| limit.key.as_str())
                    .collect::<Vec<_>>()
                    == ["number:+15551234567", "api-key:auth"]
            })
            .returning(|limits, _| {
                Ok(Admission::Refused {
                    key: limits[0].key.clone(),
                    retry_after: TimeDelta::milliseconds(1_500),
                })
            });
        let error = guarded_services(store, limiter, GuardConfig::default())
            .start_verification("auth", request())
            .await
            .unwrap_err();
        let StartError::Refused(refusal) = error else {
            panic!("expected a refusal, got {error:?}");
        };
        assert!(matches!(
            refusal,
            Refusal::RateLimited {
                scope: LimitScope::Number,
                ..
            }
        ));
        assert_eq!(
            refusal.to_string(),
            "too many codes sent to this number; try again in 2 seconds"
        );
    }

    /// Ten codes an hour to the United States all week, then 60 in this hour, none of them
    /// checked: the pumping alarm's surge, by its own arithmetic (`PUMPING_*`).
    fn surging_country() -> MockFraudStore {
        let mut store = MockFraudStore::new();
        store.expect_policy_modes().returning(|| Ok(vec![]));
        store.expect_blocks().returning(|_| Ok(vec![]));
        store.expect_safe_list().returning(|| Ok(vec![]));
        store.expect_code_counts().returning(|keys, _| {
            let this_hour = domain::pumping::hour_of(now());
            let us = keys
                .iter()
                .find(|key| key.scope == SignalScope::Country)
                .cloned()
                .unwrap();
            assert_eq!(us.value, "US");
            let mut hourly: Vec<_> = (2..24 * 7)
                .map(|hours_ago| {
                    let at = this_hour - TimeDelta::hours(hours_ago);
                    (
                        us.clone(),
                        CodeCounts {
                            sent: 10,
                            checked: 8,
                            approved: 8,
                            ..CodeCounts::at(at)
                        },
                    )
                })
                .collect();
            hourly.push((
                us,
                CodeCounts {
                    sent: 60,
                    ..CodeCounts::at(this_hour)
                },
            ));
            Ok(hourly)
        });
        store.expect_count_code().returning(|_, _, _| Ok(()));
        store
    }

    fn country_surge_in(mode: Mode) -> FraudConfig {
        let mut config = FraudConfig::default();
        config.guard.policies = Policies::default().with(Policy::CountrySurge, mode);
        config
    }

    #[tokio::test]
    async fn a_monitored_country_surge_sends_the_code_and_records_the_finding_with_it() {
        let mut store = MockVerificationStore::new();
        store.expect_find_pending().returning(|_, _, _| Ok(None));
        store
            .expect_create()
            .times(1)
            .returning(|verification, _, message, finding| {
                let risk = verification.risk.as_ref().unwrap();
                assert_eq!(risk.action, Action::Monitor);
                assert!(risk.names(ReasonCode::CountrySurge));
                // The finding goes into the decision log with the verification's own write.
                let finding = finding.unwrap();
                assert_eq!(finding.verification_id, Some(verification.id));
                assert_eq!(&finding.decision, risk);
                Ok(message.into_queued())
            });
        let mut fraud = surging_country();
        fraud.expect_log_decision().never();
        let started = fraud_guarded_services(
            store,
            open_limiter(),
            GuardConfig::default(),
            fraud,
            country_surge_in(Mode::Monitor),
        )
        .start_verification("auth", request())
        .await
        .unwrap();
        assert_eq!(
            started.verification.risk.unwrap().reasons[0].detail,
            "US: 60 codes in the last hour, usually 10.0 an hour, too few codes old enough to \
             show their conversion"
        );
    }

    #[tokio::test]
    async fn an_enforced_country_surge_refuses_the_code_and_logs_the_block() {
        let mut store = MockVerificationStore::new();
        store.expect_find_pending().returning(|_, _, _| Ok(None));
        store.expect_create().never();
        let mut limiter = MockRateLimiter::new();
        limiter.expect_acquire().never();
        let mut fraud = surging_country();
        fraud
            .expect_log_decision()
            .withf(|logged| {
                logged.verification_id.is_none() && logged.decision.action == Action::Block
            })
            .times(1)
            .returning(|_| Ok(()));
        let error = fraud_guarded_services(
            store,
            limiter,
            GuardConfig::default(),
            fraud,
            country_surge_in(Mode::Enforce),
        )
        .start_verification("auth", request())
        .await
        .unwrap_err();
        let StartError::Fraud(FraudRefusal::Blocked {
            decision,
            retry_after,
        }) = error
        else {
            panic!("expected a block, got {error:?}");
        };
        assert!(decision.names(ReasonCode::CountrySurge));
        assert_eq!(retry_after, Some(TimeDelta::minutes(15)));
    }

    #[tokio::test]
    async fn a_premium_rate_number_is_refused_naming_its_line_type_and_nothing_is_stored() {
        let mut store = MockVerificationStore::new();
        store.expect_find_pending().returning(|_, _, _| Ok(None));
        store.expect_create().never();
        let error = services(store)
            .start_verification(
                "auth",
                StartRequest {
                    to: PhoneNumber::parse("+449012345678").unwrap(),
                    ..request()
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                &error,
                StartError::Fraud(FraudRefusal::LineType { line_type, .. })
                    if *line_type == domain::fraud::LineType::PremiumRate
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "codes are not sent to premium_rate numbers"
        );
    }

    #[tokio::test]
    async fn the_first_check_and_the_approval_count_for_the_guard_in_the_hour_the_code_was_asked_for(
    ) {
        let id = pending().id;
        let mut store = MockVerificationStore::new();
        store.expect_count_check().returning(move |_, _, _| {
            let counted = Verification {
                check_count: 1,
                ..pending_with_id(id)
            };
            Ok(Some((counted, vec![hasher().hash(id, &code(), None)])))
        });
        store.expect_conclude().returning(|_, _, _| Ok(true));
        let mut fraud = MockFraudStore::new();
        let (count, mut counted) = tokio::sync::mpsc::unbounded_channel();
        fraud
            .expect_count_code()
            .returning(move |event, keys, asked_at| {
                assert_eq!(asked_at, now() - TimeDelta::minutes(1));
                assert!(keys.contains(&domain::fraud::SignalKey::api_key("auth")));
                let _ = count.send(event);
                Ok(())
            });
        fraud_guarded_services(
            store,
            open_limiter(),
            GuardConfig::default(),
            fraud,
            FraudConfig::default(),
        )
        .check_verification("auth", id, &code())
        .await
        .unwrap();
        let mut events = Vec::new();
        while let Ok(event) = counted.try_recv() {
            events.push(event);
        }
        assert_eq!(events, [CodeEvent::Checked, CodeEvent::Approved]);
    }
}
