//! A payment a code confirms (PSD2 dynamic linking): its amount, currency and payee are shown
//! to the payer with the code, and the code's hash binds them, so that a code read for one
//! payment cannot approve another.
//!
//! Each part is bounded so that every built-in transaction text still fits two SMS segments
//! with the longest payee and amount (`template`'s tests prove it in every language).

use std::fmt;

use crate::Channel;

/// Most digits before the point: under a billion, more than any payment a text confirms.
pub const MAX_AMOUNT_WHOLE_DIGITS: usize = 9;
/// Most digits after the point: no ISO 4217 currency has more than four minor-unit digits.
pub const MAX_AMOUNT_DECIMALS: usize = 4;
/// Most characters of a payee: a name as a bank statement shows it (Vonage's PSD2 allows 18).
pub const MAX_PAYEE_CHARS: usize = 20;

/// An amount of money as the client wrote it (`10.50`), compared as a number: `10.5`, `10.50`
/// and `010.500` are one amount.
#[derive(Debug, Clone, Eq)]
pub struct TransactionAmount {
    /// As written, without leading zeros: what the texts show.
    written: String,
    /// No leading zeros, no trailing zeros after the point, no point without decimals: what
    /// the code's hash binds and what compares.
    canonical: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("an amount is not negative")]
    Negative,
    #[error(
        "an amount is a decimal number written with digits and at most one point, such as 49.90"
    )]
    NotADecimal,
    #[error("an amount has at most {MAX_AMOUNT_WHOLE_DIGITS} digits before the point")]
    TooLarge,
    #[error("an amount has at most {MAX_AMOUNT_DECIMALS} digits after the point")]
    TooPrecise,
}

impl TransactionAmount {
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        if text.starts_with('-') {
            return Err(AmountError::Negative);
        }
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (text, None),
        };
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || fraction.is_some_and(|fraction| !digits(fraction)) {
            return Err(AmountError::NotADecimal);
        }
        let whole = match whole.trim_start_matches('0') {
            "" => "0",
            significant => significant,
        };
        if whole.len() > MAX_AMOUNT_WHOLE_DIGITS {
            return Err(AmountError::TooLarge);
        }
        if fraction.is_some_and(|fraction| fraction.len() > MAX_AMOUNT_DECIMALS) {
            return Err(AmountError::TooPrecise);
        }
        let written = match fraction {
            Some(fraction) => format!("{whole}.{fraction}"),
            None => whole.to_owned(),
        };
        let canonical = match fraction.map(|fraction| fraction.trim_end_matches('0')) {
            Some(decimals) if !decimals.is_empty() => format!("{whole}.{decimals}"),
            _ => whole.to_owned(),
        };
        Ok(Self { written, canonical })
    }

    /// As the client wrote it (leading zeros dropped): `49.90`.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// The number itself: `49.9` for `49.90`, `10` for `10.00`.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }
}

impl PartialEq for TransactionAmount {
    fn eq(&self, other: &Self) -> bool {
        self.canonical == other.canonical
    }
}

impl fmt::Display for TransactionAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// An ISO 4217 currency code: three upper-case letters (`EUR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Currency(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a currency is an ISO 4217 code of three upper-case letters, such as EUR")]
pub struct CurrencyError;

impl Currency {
    pub fn parse(text: &str) -> Result<Self, CurrencyError> {
        let valid = text.len() == 3 && text.bytes().all(|b| b.is_ascii_uppercase());
        valid.then(|| Self(text.to_owned())).ok_or(CurrencyError)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who is paid, as the payer will read it in the code's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payee(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayeeError {
    #[error("a payee must not be empty")]
    Empty,
    #[error("a payee has at most {MAX_PAYEE_CHARS} characters, so that its code still fits two SMS segments")]
    TooLong,
    /// Control characters break the text; direction overrides and invisible characters could
    /// make the payee read as another one.
    #[error("a payee is one line of visible characters, without direction marks or invisible characters")]
    NotPrintable,
}

impl Payee {
    /// Spaces around are dropped; the payee compares exactly otherwise (case included).
    pub fn parse(text: &str) -> Result<Self, PayeeError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(PayeeError::Empty);
        }
        if text.chars().count() > MAX_PAYEE_CHARS {
            return Err(PayeeError::TooLong);
        }
        if text.chars().any(|c| !is_visible(c)) {
            return Err(PayeeError::NotPrintable);
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `c` may appear in a payee: not a control character, not a character that changes
/// the direction of the text or shows nothing, and in the Basic Multilingual Plane (one UCS-2
/// unit, as the segment bound counts it; no emoji).
fn is_visible(c: char) -> bool {
    let invisible = matches!(
        c,
        '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    );
    !c.is_control() && !invisible && u32::from(c) <= 0xFFFF
}

/// The payment a code confirms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub amount: TransactionAmount,
    pub currency: Currency,
    pub payee: Payee,
}

/// Why a request's transaction details are refused, naming the field to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    #[error(transparent)]
    Amount(#[from] AmountError),
    #[error(transparent)]
    Currency(#[from] CurrencyError),
    #[error(transparent)]
    Payee(#[from] PayeeError),
    /// Amount, currency and payee go together: PSD2's dynamic linking shows the payer both the
    /// amount and the payee, and an amount means nothing without its currency.
    #[error("`{missing}` is required with `{given}`: a transaction has an amount, a currency and a payee")]
    Incomplete {
        missing: &'static str,
        given: &'static str,
    },
}

impl TransactionError {
    /// The request field to fix: `amount`, `currency` or `payee`.
    pub fn field(&self) -> &'static str {
        match self {
            TransactionError::Amount(_) => "amount",
            TransactionError::Currency(_) => "currency",
            TransactionError::Payee(_) => "payee",
            TransactionError::Incomplete { missing, .. } => missing,
        }
    }
}

impl Transaction {
    /// The transaction a request's optional fields describe: none when all three are absent,
    /// one when all three are given and valid.
    pub fn parse(
        amount: Option<&str>,
        currency: Option<&str>,
        payee: Option<&str>,
    ) -> Result<Option<Self>, TransactionError> {
        let fields = [("amount", amount), ("currency", currency), ("payee", payee)];
        let given = fields
            .iter()
            .find(|(_, value)| value.is_some())
            .map(|f| f.0);
        let missing = fields
            .iter()
            .find(|(_, value)| value.is_none())
            .map(|f| f.0);
        match (given, missing) {
            (None, _) => return Ok(None),
            (Some(given), Some(missing)) => {
                return Err(TransactionError::Incomplete { missing, given })
            }
            (Some(_), None) => {}
        }
        Ok(Some(Self {
            amount: TransactionAmount::parse(amount.unwrap_or_default())?,
            currency: Currency::parse(currency.unwrap_or_default())?,
            payee: Payee::parse(payee.unwrap_or_default())?,
        }))
    }

    /// What a code's hash binds: the canonical amount, the currency and the payee, each after
    /// its name and separated by NUL, which none of them can contain, so that no two
    /// transactions give the same bytes.
    pub fn binding(&self) -> String {
        format!(
            "amount={}\0currency={}\0payee={}",
            self.amount.canonical(),
            self.currency.as_str(),
            self.payee.as_str()
        )
    }
}

impl Channel {
    /// Whether a code sent on this channel can show a transaction's amount and payee. WhatsApp
    /// codes go out in an approved authentication template whose body is fixed (the code is
    /// its only variable), so it cannot; an SMS and a call say them.
    pub fn carries_transaction_details(self) -> bool {
        match self {
            Channel::Sms | Channel::Voice => true,
            Channel::Whatsapp => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(text: &str) -> Result<TransactionAmount, AmountError> {
        TransactionAmount::parse(text)
    }

    #[test]
    fn amounts_compare_as_numbers_and_keep_how_they_were_written() {
        assert_eq!(amount("10.0").unwrap(), amount("10.00").unwrap());
        assert_eq!(amount("10").unwrap(), amount("010.000").unwrap());
        assert_eq!(amount("10.5").unwrap(), amount("10.50").unwrap());
        assert_ne!(amount("10.5").unwrap(), amount("10.05").unwrap());
        assert_ne!(amount("100").unwrap(), amount("10.0").unwrap());
        assert_eq!(amount("0.00").unwrap(), amount("0").unwrap());
        assert_eq!(amount("010.50").unwrap().as_str(), "10.50");
        assert_eq!(amount("010.50").unwrap().canonical(), "10.5");
        assert_eq!(amount("10.00").unwrap().canonical(), "10");
        assert_eq!(amount("0.0500").unwrap().canonical(), "0.05");
        assert_eq!(amount("123456789.1234").unwrap().as_str(), "123456789.1234");
    }

    #[test]
    fn negative_malformed_huge_or_too_precise_amounts_are_refused() {
        assert_eq!(amount("-1"), Err(AmountError::Negative));
        for text in [
            "", "abc", "1e3", "+1", " 1", "1 ", ".5", "5.", "1.2.3", "1,50", "NaN", "١", "0x10",
        ] {
            assert_eq!(amount(text), Err(AmountError::NotADecimal), "{text:?}");
        }
        assert_eq!(amount("1000000000"), Err(AmountError::TooLarge));
        assert!(amount("0001000000").is_ok(), "leading zeros are not digits");
        assert_eq!(amount("1.00001"), Err(AmountError::TooPrecise));
        assert_eq!(
            amount(&format!("1.{}", "0".repeat(40))),
            Err(AmountError::TooPrecise)
        );
    }

    #[test]
    fn a_currency_is_three_upper_case_letters() {
        assert_eq!(Currency::parse("EUR").unwrap().as_str(), "EUR");
        for text in ["eur", "EU", "EURO", "€", "E1R", ""] {
            assert_eq!(Currency::parse(text), Err(CurrencyError), "{text:?}");
        }
    }

    #[test]
    fn a_payee_is_a_short_visible_line() {
        assert_eq!(Payee::parse(" Acme Inc. ").unwrap().as_str(), "Acme Inc.");
        assert!(Payee::parse(&"Ж".repeat(MAX_PAYEE_CHARS)).is_ok());
        assert_eq!(
            Payee::parse(&"a".repeat(MAX_PAYEE_CHARS + 1)),
            Err(PayeeError::TooLong)
        );
        assert_eq!(Payee::parse("   "), Err(PayeeError::Empty));
        for text in [
            "Ac\nme",
            "Acme\u{202E}cnI",
            "Ac\u{200B}me",
            "Acme 💸",
            "A\u{7}",
        ] {
            assert_eq!(
                Payee::parse(text),
                Err(PayeeError::NotPrintable),
                "{text:?}"
            );
        }
    }

    #[test]
    fn amount_currency_and_payee_come_together_or_not_at_all() {
        assert_eq!(Transaction::parse(None, None, None), Ok(None));
        let transaction = Transaction::parse(Some("49.90"), Some("EUR"), Some("Acme"))
            .unwrap()
            .unwrap();
        assert_eq!(transaction.amount.as_str(), "49.90");
        let incomplete = Transaction::parse(Some("49.90"), None, Some("Acme")).unwrap_err();
        assert_eq!(incomplete.field(), "currency");
        assert_eq!(
            incomplete.to_string(),
            "`currency` is required with `amount`: a transaction has an amount, a currency and a payee"
        );
        let no_payee = Transaction::parse(Some("1"), Some("EUR"), None).unwrap_err();
        assert_eq!(no_payee.field(), "payee");
        assert_eq!(
            Transaction::parse(None, None, Some("Acme"))
                .unwrap_err()
                .field(),
            "amount"
        );
        let bad = Transaction::parse(Some("-1"), Some("EUR"), Some("Acme")).unwrap_err();
        assert_eq!(bad.field(), "amount");
        let bad = Transaction::parse(Some("1"), Some("eur"), Some("Acme")).unwrap_err();
        assert_eq!(bad.field(), "currency");
    }

    #[test]
    fn the_binding_is_the_same_for_equal_amounts_and_differs_for_any_other_part() {
        let binding = |amount: &str, currency: &str, payee: &str| {
            Transaction::parse(Some(amount), Some(currency), Some(payee))
                .unwrap()
                .unwrap()
                .binding()
        };
        assert_eq!(
            binding("10.0", "EUR", "Acme"),
            binding("10.00", "EUR", "Acme")
        );
        assert_ne!(binding("10", "EUR", "Acme"), binding("10", "GBP", "Acme"));
        assert_ne!(binding("10", "EUR", "Acme"), binding("10", "EUR", "ACME"));
        assert_ne!(binding("10", "EUR", "Acme"), binding("1", "EUR", "Acme"));
    }

    #[test]
    fn whatsapp_cannot_carry_transaction_details() {
        assert!(Channel::Sms.carries_transaction_details());
        assert!(Channel::Voice.carries_transaction_details());
        assert!(!Channel::Whatsapp.carries_transaction_details());
    }
}
