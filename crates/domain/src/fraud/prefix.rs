//! Destination prefixes: the unit the guard judges and blocks. Pumping targets ranges of
//! numbers a fraudster rents (often sequential), so a range shows what a single number cannot.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::PhoneNumber;

/// Longest E.164 number: a prefix may be a whole number (a safe-listed one).
const MAX_DIGITS: usize = 15;

/// The leading digits of E.164 numbers, with the `+` (`+447700900`): a range of numbers, or
/// one whole number. Built by [`Prefix::parse`] or from a number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prefix(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a number prefix: `+` and 1 to 15 digits, such as +447700900")]
pub struct InvalidPrefix(pub String);

impl Prefix {
    /// `+` and 1 to 15 digits; spaces, dots and dashes are ignored as in a phone number.
    pub fn parse(text: &str) -> Result<Self, InvalidPrefix> {
        let invalid = || InvalidPrefix(text.to_owned());
        let rest = text.trim().strip_prefix('+').ok_or_else(invalid)?;
        if !rest
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '.' | '-'))
        {
            return Err(invalid());
        }
        let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
        if digits.is_empty() || digits.len() > MAX_DIGITS || digits.starts_with('0') {
            return Err(invalid());
        }
        Ok(Self(format!("+{digits}")))
    }

    /// `number` without its last `dropped` digits, keeping at least one digit.
    pub fn of(number: &PhoneNumber, dropped: usize) -> Self {
        let text = number.as_str();
        let digits = text.len().saturating_sub(1);
        let kept = digits.saturating_sub(dropped).max(1);
        Self(text[..=kept].to_owned())
    }

    /// The whole number, as a prefix of itself.
    pub fn whole(number: &PhoneNumber) -> Self {
        Self(number.as_str().to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `number` starts with this prefix.
    pub fn covers(&self, number: &PhoneNumber) -> bool {
        number.as_str().starts_with(&self.0)
    }

    /// Digits after the `+`.
    pub fn digits(&self) -> usize {
        self.0.len() - 1
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Prefix {
    type Err = InvalidPrefix;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl TryFrom<String> for Prefix {
    type Error = InvalidPrefix;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<Prefix> for String {
    fn from(prefix: Prefix) -> Self {
        prefix.0
    }
}

/// The two ranges a number is judged in: its 1,000-number range (without its last 3 digits),
/// where sequential pumping shows at once, and its 100,000-number range (without its last 5),
/// where an attack spread over many small ranges adds up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Prefixes {
    pub narrow: Prefix,
    pub wide: Prefix,
}

impl Prefixes {
    pub fn of(number: &PhoneNumber) -> Self {
        Self {
            narrow: Prefix::of(number, 3),
            wide: Prefix::of(number, 5),
        }
    }

    /// Narrow first.
    pub fn iter(&self) -> impl Iterator<Item = &Prefix> {
        [&self.narrow, &self.wide].into_iter()
    }
}

/// Numbers and prefixes the guard never blocks (an operator's own test phones, a partner's
/// range); the send limits still apply to them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SafeList {
    entries: Vec<Prefix>,
}

impl SafeList {
    pub fn new(entries: impl IntoIterator<Item = Prefix>) -> Self {
        Self {
            entries: entries.into_iter().collect(),
        }
    }

    /// The entry that covers `number`, if one does.
    pub fn covering(&self, number: &PhoneNumber) -> Option<&Prefix> {
        self.entries.iter().find(|entry| entry.covers(number))
    }

    pub fn covers(&self, number: &PhoneNumber) -> bool {
        self.covering(number).is_some()
    }

    pub fn entries(&self) -> &[Prefix] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> PhoneNumber {
        PhoneNumber::parse(text).unwrap()
    }

    #[test]
    fn a_numbers_prefixes_drop_its_last_three_and_last_five_digits() {
        let prefixes = Prefixes::of(&number("+447700900123"));
        assert_eq!(prefixes.narrow.as_str(), "+447700900");
        assert_eq!(prefixes.wide.as_str(), "+4477009");
        assert!(prefixes.narrow.covers(&number("+447700900999")));
        assert!(!prefixes.narrow.covers(&number("+447700901000")));
        assert!(prefixes.wide.covers(&number("+447700999999")));
    }

    #[test]
    fn a_short_number_keeps_at_least_one_digit_in_its_prefixes() {
        // St Helena: five national digits.
        let prefixes = Prefixes::of(&number("+29012345"));
        assert_eq!(prefixes.narrow.as_str(), "+29012");
        assert_eq!(prefixes.wide.as_str(), "+290");
    }

    #[test]
    fn a_prefix_is_a_plus_and_digits_written_as_people_write_numbers() {
        assert_eq!(
            Prefix::parse(" +44 7700-900 ").unwrap().as_str(),
            "+447700900"
        );
        assert_eq!(
            Prefix::parse("+447700900123").unwrap(),
            Prefix::whole(&number("+447700900123"))
        );
        for text in ["447700900", "+", "+44a", "+0123", "+1234567890123456", ""] {
            assert_eq!(
                Prefix::parse(text),
                Err(InvalidPrefix(text.into())),
                "{text}"
            );
        }
        assert!(serde_json::from_str::<Prefix>("\"+44\"").is_ok());
        assert!(serde_json::from_str::<Prefix>("\"44\"").is_err());
    }

    #[test]
    fn the_safe_list_covers_whole_numbers_and_ranges() {
        let safe = SafeList::new([
            Prefix::parse("+15551234567").unwrap(),
            Prefix::parse("+4477009").unwrap(),
        ]);
        assert!(safe.covers(&number("+15551234567")));
        assert!(!safe.covers(&number("+15551234568")));
        assert_eq!(
            safe.covering(&number("+447700900123")).map(Prefix::as_str),
            Some("+4477009")
        );
        assert!(!SafeList::default().covers(&number("+15551234567")));
    }
}
