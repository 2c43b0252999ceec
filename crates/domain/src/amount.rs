//! Exact amounts of money: a provider's price read from its text, the parts of a message added
//! up, and the sums of the usage reports, without a float rounding any of them.

use std::fmt;
use std::str::FromStr;

/// A decimal amount in units of 10^-8 of its currency: eight decimals hold Vonage's precision
/// and Twilio's five.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i128);

/// Text that is not a price a provider could mean.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a plain decimal with at most {whole} digits before the point and {decimals} after",
    whole = Amount::WHOLE_DIGITS,
    decimals = Amount::DECIMALS
)]
pub struct InvalidAmount(pub String);

impl Amount {
    pub const ZERO: Amount = Amount(0);
    /// Decimals kept.
    pub const DECIMALS: usize = 8;
    pub const UNITS_PER_WHOLE: i128 = 100_000_000;
    /// Digits before the point of a price read from a provider: no message costs a million,
    /// and the bound keeps the stores' sums exact (a store counts nothing longer).
    pub const WHOLE_DIGITS: usize = 6;

    pub const fn from_units(units: i128) -> Self {
        Self(units)
    }

    pub const fn units(self) -> i128 {
        self.0
    }

    /// `None` on overflow, which no sum of bounded prices reaches.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// The same amount with the other sign (Twilio's charges are negative).
    #[must_use]
    pub fn negated(self) -> Amount {
        Amount(-self.0)
    }
}

/// Strict: an optional `-`, one to six digits, optionally a point and one to eight digits (the
/// stores' sums count exactly these). No exponent, no `+`, no spaces: a price outside this is
/// refused, not guessed at.
impl FromStr for Amount {
    type Err = InvalidAmount;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidAmount(text.chars().take(40).collect());
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
        // Lengths are checked before parsing: forty digits never reach an integer.
        if whole.is_empty()
            || whole.len() > Self::WHOLE_DIGITS
            || !all_digits(whole)
            || !all_digits(fraction)
            || (digits.contains('.') && fraction.is_empty())
            || fraction.len() > Self::DECIMALS
        {
            return Err(invalid());
        }
        let whole: i128 = whole.parse().map_err(|_| invalid())?;
        let fraction: i128 = format!("{fraction:0<8}").parse().map_err(|_| invalid())?;
        let units = whole * Self::UNITS_PER_WHOLE + fraction;
        Ok(Amount(if negative { -units } else { units }))
    }
}

/// At least two decimals, no trailing zeros beyond them: `0.0079`, `1.50`, `-0.0225`.
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let units = self.0.unsigned_abs();
        let per_whole = Self::UNITS_PER_WHOLE.unsigned_abs();
        let fraction = format!("{:08}", units % per_whole);
        let fraction = fraction.trim_end_matches('0');
        write!(f, "{sign}{}.{fraction:0<2}", units / per_whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(text: &str) -> Result<i128, InvalidAmount> {
        text.parse::<Amount>().map(Amount::units)
    }

    #[test]
    fn providers_prices_are_read_exactly() {
        assert_eq!(amount("0.03330000"), Ok(3_330_000));
        assert_eq!(amount("-0.00790"), Ok(-790_000));
        assert_eq!(amount("1"), Ok(100_000_000));
        assert_eq!(amount("0.00000001"), Ok(1));
        assert_eq!(amount("999999.99999999"), Ok(99_999_999_999_999));
        assert_eq!(amount("000012.5"), Ok(1_250_000_000));
    }

    #[test]
    fn huge_or_malformed_prices_are_refused_without_overflow() {
        for text in [
            "1e400",
            "1E5",
            &"9".repeat(40),
            &format!("0.{}", "1".repeat(40)),
            "1000000",
            "0000001",
            "-1000000.5",
            "0.000000001",
            "",
            "-",
            ".5",
            "5.",
            "+1",
            " 1",
            "1.2.3",
            "--1",
            "abc",
            "NaN",
            "inf",
            "١",
        ] {
            assert!(amount(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn amounts_print_as_decimals_without_losing_a_unit() {
        let print = |units| Amount::from_units(units).to_string();
        assert_eq!(print(-2_250_000), "-0.0225");
        assert_eq!(print(150_000_000), "1.50");
        assert_eq!(print(0), "0.00");
        assert_eq!(print(3_330_001), "0.03330001");
        assert_eq!(
            print(i128::MIN),
            "-1701411834604692317316873037158.84105728"
        );
    }
}
