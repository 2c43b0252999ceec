//! The vocabulary of sms-notify: phone numbers, channels, messages and their status machine,
//! verifications and their rules, the retry policy, the fraud guard's decisions.
//!
//! Also the languages codes are written in (`language`), the brand and autofill lines of a
//! code's text (`code_text`), the payment a code confirms (`transaction`, PSD2), and the SMS
//! segment arithmetic (GSM-7 / UCS-2), which both templates and providers need.
//!
//! Everything here is a value or a pure function. This crate must never do I/O, read the clock,
//! or depend on a framework (no tokio, sqlx, reqwest, axum): time comes in as an argument, so
//! every rule can be tested without waiting.

mod amount;
pub mod budget;
pub mod channel;
pub mod code_text;
pub mod country;
pub mod delivery;
pub mod fraud;
mod id;
pub mod language;
pub mod latency;
pub mod message;
pub mod phone;
pub mod pumping;
pub mod retry;
pub mod segments;
pub mod transaction;
pub mod verification;
pub mod webhook;
pub mod workflow;

pub use amount::{Amount, InvalidAmount};
pub use channel::Channel;
pub use code_text::{
    with_autofill, AppDomain, AppDomainError, AppHash, AppHashError, Brand, BrandError,
};
pub use country::{CountryAllowList, CountryNotAllowed, UnknownCountry};
pub use delivery::{DeliveryEvent, Price};
pub use message::{
    Attempt, AttemptOutcome, Message, MessageId, MessageStatus, NewMessage, Priority,
};
pub use phone::{PhoneNumber, PhoneNumberError};
pub use pumping::{HourlySends, PumpingPolicy, Traffic};
pub use retry::RetryPolicy;
pub use segments::{analyze, outside_gsm7, Encoding, SegmentInfo};
pub use transaction::{
    AmountError, Currency, CurrencyError, Payee, PayeeError, Transaction, TransactionAmount,
    TransactionError,
};
pub use verification::{
    CheckOutcome, CheckRefusal, CodeHash, CodeLength, ResendRefusal, Verification,
    VerificationCode, VerificationId, VerificationPolicy, VerificationStatus,
};
pub use workflow::{
    FallbackReason, InvalidWorkflow, StepRequest, VerificationAttempt, Workflow, WorkflowPlan,
};
