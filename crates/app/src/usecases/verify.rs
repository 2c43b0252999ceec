//! The two-factor use cases: start (or resend) a verification, check a code, cancel.

use chrono::{DateTime, Utc};
use domain::{
    Channel, CheckOutcome, CheckRefusal, CodeLength, Message, NewMessage, PhoneNumber, Priority,
    ResendRefusal, Verification, VerificationCode, VerificationId, VerificationPolicy,
    VerificationStatus,
};
use ports::{StoreError, VerificationFilter};
use template::{code_digits, RenderError, TWO_FACTOR_AUTH, TWO_FACTOR_AUTH_VOICE};

use crate::observability::metrics::VerificationEvent;
use crate::usecases::guards::{LimitScope, Refusal};
use crate::usecases::messaging::new_message;
use crate::usecases::Services;

#[derive(Debug, Clone)]
pub struct StartRequest {
    pub to: PhoneNumber,
    pub channel: Channel,
    pub locale: Option<String>,
    pub code_length: Option<CodeLength>,
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
    #[error(transparent)]
    Refused(#[from] Refusal),
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
    /// `fr-CA` when only French exists); `None` for the template without a locale, which a
    /// request whose locale has no translation gets.
    pub fn locale(&self) -> Option<&str> {
        if let Some(locale) = self.message.locale.as_deref() {
            return Some(locale);
        }
        self.message
            .template
            .as_deref()?
            .strip_prefix(TWO_FACTOR_AUTH)?
            .strip_prefix('.')
    }
}

/// The brand a call names until it is configurable (`VERIFY_BRAND`), as the SMS text does.
const BRAND: &str = "Smarter Firms";

/// How a code goes out on its channel, decided before anything is counted or stored.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CodeDelivery {
    /// An SMS, or a free-text message: the `two-factor-auth` text.
    Text,
    /// A call speaking the `two-factor-auth-voice` text.
    Call,
    /// WhatsApp's approved template for `locale`, the code its one variable.
    WhatsappTemplate { locale: String, content_sid: String },
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
        if let Some(pending) = self
            .verifications
            .find_pending(&request.to, api_key, now)
            .await?
        {
            return self.resend(api_key, pending, &request, &policy, now).await;
        }

        let verification = Verification::start(
            request.to.clone(),
            request.channel,
            api_key.to_owned(),
            &policy,
            now,
        );
        let delivery = self.code_delivery(request.channel, request.locale.as_deref())?;
        self.guards.admit(api_key, &verification.to, now).await?;
        let code = self.new_code(&verification.to, policy.code_length);
        let message = self.code_message(
            api_key,
            &verification,
            &code,
            request.locale.as_deref(),
            &delivery,
            now,
        )?;
        let message = self
            .verifications
            .create(
                &verification,
                self.hasher.hash(verification.id, &code),
                message,
            )
            .await?;
        self.dispatcher_wake.notify_one();
        self.guards.record(&verification.to, now);
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
        let delivery = self.code_delivery(pending.channel, request.locale.as_deref())?;
        self.guards.admit(api_key, &pending.to, now).await?;
        let code = self.new_code(&pending.to, policy.code_length);
        let message = self.code_message(
            api_key,
            &pending,
            &code,
            request.locale.as_deref(),
            &delivery,
            now,
        )?;
        let added = self
            .verifications
            .add_code(
                pending.id,
                self.hasher.hash(pending.id, &code),
                message,
                now,
                now - policy.resend_interval,
            )
            .await?;
        // Another request for the same number won the race to resend.
        let Some((verification, message)) = added else {
            return Err(StartError::TooSoon {
                retry_after: policy.resend_interval,
            });
        };
        self.dispatcher_wake.notify_one();
        self.guards.record(&verification.to, now);
        tracing::info!(verification_id = %verification.id, send_count = verification.send_count, "verification code resent");
        Ok(Started {
            verification,
            message,
            created: false,
        })
    }

    /// A random code, or a test number's fixed one.
    fn new_code(&self, to: &PhoneNumber, length: CodeLength) -> VerificationCode {
        match self.test_numbers.code_for(to) {
            Some(code) => {
                tracing::warn!(to = %to.masked(), "test number: its fixed code is used (TEST_NUMBERS)");
                code.clone()
            }
            None => self.code_generator.generate(length),
        }
    }

    /// How a code would go out on `channel` in `locale`, or why it cannot: no provider sends
    /// on the channel, or WhatsApp has no approved template for the locale, its language or
    /// English.
    fn code_delivery(
        &self,
        channel: Channel,
        locale: Option<&str>,
    ) -> Result<CodeDelivery, StartError> {
        let not_offered = |reason: &str| StartError::ChannelNotOffered {
            channel,
            reason: reason.to_owned(),
        };
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
                let (locale, content_sid) =
                    self.whatsapp_templates.resolve(locale).ok_or_else(|| {
                        not_offered(&format!(
                            "WhatsApp sends codes only with an approved template, and \
                             TWILIO_WHATSAPP_CONTENT_SIDS has none for {}, its language or en",
                            locale.unwrap_or("en")
                        ))
                    })?;
                CodeDelivery::WhatsappTemplate {
                    locale: locale.to_owned(),
                    content_sid: content_sid.to_owned(),
                }
            }
        })
    }

    fn code_message(
        &self,
        api_key: &str,
        verification: &Verification,
        code: &VerificationCode,
        locale: Option<&str>,
        delivery: &CodeDelivery,
        now: DateTime<Utc>,
    ) -> Result<NewMessage, RenderError> {
        // Whole minutes, rounded up: "expires in 10 minutes" rather than "in 9".
        let remaining_seconds = (verification.expires_at - now).num_seconds().max(0);
        let expiry_minutes = (remaining_seconds + 59) / 60;
        let (template, body, message_locale, content_sid) = match delivery {
            CodeDelivery::Text => {
                let template = self.resolve(TWO_FACTOR_AUTH, locale)?;
                let body = self.templates.render(
                    &template,
                    &serde_json::json!({ "code": code.expose(), "expiryMinutes": expiry_minutes }),
                )?;
                (Some(template), body, None, None)
            }
            CodeDelivery::Call => {
                let template = self.resolve(TWO_FACTOR_AUTH_VOICE, locale)?;
                let body = self.templates.render(
                    &template,
                    &serde_json::json!({
                        "code_digits": code_digits(code.expose()),
                        "brand": BRAND,
                        "expiryMinutes": expiry_minutes,
                    }),
                )?;
                let spoken_in = locale_of(&template, TWO_FACTOR_AUTH_VOICE);
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

    /// This API key's verifications that `filter` selects, newest first.
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
        let checked = self.check(api_key, id, code).await;
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
        let checked = match self
            .verifications
            .find_pending(to, api_key, self.clock.now())
            .await
        {
            Ok(Some(pending)) => self.check(api_key, pending.id, code).await,
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
        let matches = self.hasher.matches_any(id, code, &hashes);
        let outcome = counted.outcome_of_counted_check(matches);
        match outcome.status {
            VerificationStatus::Approved => {
                if !self.verifications.conclude(id, outcome.status, now).await? {
                    // Approved by a concurrent check, canceled or expired first: this check
                    // approves nothing and is answered as one that came after.
                    return Err(self.refused_check(api_key, id, now).await?.into());
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
    use domain::{CountryAllowList, HourlySends, PumpingPolicy, Traffic};
    use ports::{
        Admission, MockClock, MockCodeGenerator, MockMessageStore, MockRateLimiter,
        MockVerificationStore,
    };
    use secrecy::SecretString;

    use super::*;
    use crate::usecases::codes::CodeHasher;
    use crate::usecases::guards::{GuardConfig, PumpingAlarmHook};
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
        limiter.expect_country_sends().returning(|_, _| Ok(vec![]));
        limiter
            .expect_record_country_send()
            .returning(|_, _| Ok(()));
        limiter
    }

    fn services(verifications: MockVerificationStore) -> Services {
        guarded_services(verifications, open_limiter(), GuardConfig::default())
    }

    fn guarded_services(
        verifications: MockVerificationStore,
        limiter: MockRateLimiter,
        guards: GuardConfig,
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
            fraud: Arc::new(ports::MockFraudStore::new()),
            verify_services: Arc::new(ports::MockVerifyServiceStore::new()),
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
        .build()
    }

    fn request() -> StartRequest {
        StartRequest {
            to: PhoneNumber::parse("+15551234567").unwrap(),
            channel: Channel::Sms,
            locale: None,
            code_length: None,
        }
    }

    #[tokio::test]
    async fn a_new_verification_queues_the_code_first_in_line_and_only_until_expiry() {
        let mut store = MockVerificationStore::new();
        store.expect_find_pending().returning(|_, _, _| Ok(None));
        store
            .expect_create()
            .times(1)
            .returning(|verification, hash, message| {
                assert!(hasher().matches_any(verification.id, &code(), &[hash]));
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
        store
            .expect_add_code()
            .times(1)
            .returning(move |id, _, message, _, last_sent_before| {
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
            });
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
            Ok(Some((counted, vec![hasher().hash(id, &code())])))
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
                vec![hasher().hash(id, &code())],
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
            Ok(Some((counted, vec![hasher().hash(id, &code())])))
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
        limiter.expect_country_sends().returning(|_, _| Ok(vec![]));
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
        limiter.expect_record_country_send().never();
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

    struct CountingHook(std::sync::Mutex<Vec<u16>>);

    impl PumpingAlarmHook for CountingHook {
        fn surge(&self, calling_code: u16, _traffic: &Traffic) {
            self.0.lock().unwrap().push(calling_code);
        }
    }

    /// Ten codes an hour to +1 all week, then 60 in the last hour.
    fn surging_limiter() -> MockRateLimiter {
        let mut limiter = MockRateLimiter::new();
        limiter.expect_country_sends().returning(|calling_code, _| {
            assert_eq!(calling_code, 1);
            let this_hour = domain::pumping::hour_of(now());
            let mut hourly: Vec<HourlySends> = (2..24 * 7)
                .map(|hours_ago| HourlySends {
                    hour: this_hour - TimeDelta::hours(hours_ago),
                    sends: 10,
                })
                .collect();
            hourly.push(HourlySends {
                hour: this_hour,
                sends: 60,
            });
            Ok(hourly)
        });
        limiter
    }

    #[tokio::test]
    async fn a_surge_to_one_calling_code_raises_the_alarm_and_still_sends_by_default() {
        let mut store = MockVerificationStore::new();
        store.expect_find_pending().returning(|_, _, _| Ok(None));
        store
            .expect_create()
            .times(1)
            .returning(|_, _, message| Ok(message.into_queued()));
        let mut limiter = surging_limiter();
        limiter
            .expect_acquire()
            .returning(|_, _| Ok(Admission::Admitted));
        let (count, mut counted) = tokio::sync::mpsc::unbounded_channel();
        limiter
            .expect_record_country_send()
            .times(1)
            .returning(move |calling_code, _| {
                let _ = count.send(calling_code);
                Ok(())
            });
        let hook = Arc::new(CountingHook(Default::default()));
        let mut services = guarded_services(store, limiter, GuardConfig::default());
        services.guards.alarm = hook.clone();
        services
            .start_verification("auth", request())
            .await
            .unwrap();
        assert_eq!(*hook.0.lock().unwrap(), vec![1]);
        // Counted in the background, after the answer.
        let calling_code = tokio::time::timeout(std::time::Duration::from_secs(5), counted.recv());
        assert_eq!(calling_code.await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn a_surge_pauses_codes_to_that_calling_code_when_configured_to() {
        let mut store = MockVerificationStore::new();
        store.expect_find_pending().returning(|_, _, _| Ok(None));
        store.expect_create().never();
        let mut limiter = surging_limiter();
        limiter.expect_acquire().never();
        let guards = GuardConfig {
            pumping: PumpingPolicy {
                refuse: true,
                ..PumpingPolicy::default()
            },
            ..GuardConfig::default()
        };
        let error = guarded_services(store, limiter, guards)
            .start_verification("auth", request())
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                StartError::Refused(Refusal::DestinationPaused { calling_code: 1 })
            ),
            "{error:?}"
        );
    }
}
