//! Destination phone numbers, always in E.164.

mod regions;

use std::fmt;
use std::hash::{Hash, Hasher};

use phonenumber::metadata::DATABASE;
use phonenumber::Mode;
use serde::{Deserialize, Serialize};

/// Longest E.164 number: 15 digits after the `+` (ITU-T E.164, section 6).
const MAX_E164_DIGITS: usize = 15;

/// A phone number in E.164 form (`+442079460958`), built only by [`PhoneNumber::parse`].
///
/// Parsing accepts every number that is *possible* for its country (right country code, a
/// length the country uses), not only numbers in ranges currently assigned: strict range checks
/// reject test ranges such as the North American 555 numbers that client teams use, and they
/// go stale as regulators assign new ranges.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber {
    e164: String,
    calling_code: u16,
    /// Worked out when the number is parsed, from what parsing found: parsing the number again
    /// to tell its country cost as much as the parse itself, for every message queued. `None`
    /// for a stored number read back, whose country is seldom asked for.
    country: Option<Option<String>>,
    /// Where the parse found the number's region, for its line type (the fraud screen asks for
    /// it on every code): telling the region again cost as much as the parse. `None` where the
    /// library parsed the number, or for a stored number read back.
    line: Option<regions::Line>,
}

/// A number is its E.164 text; the rest is worked out from it.
impl PartialEq for PhoneNumber {
    fn eq(&self, other: &Self) -> bool {
        self.e164 == other.e164
    }
}

impl Eq for PhoneNumber {}

impl Hash for PhoneNumber {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.e164.hash(state);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneNumberError {
    #[error(
        "a phone number must be in international form, starting with `+` and the country code"
    )]
    MissingPlus,
    #[error("a phone number may contain only digits, spaces, dots, dashes and parentheses")]
    InvalidCharacters,
    #[error("a phone number has at most 15 digits")]
    TooLong,
    #[error("`+{0}` is not a country calling code")]
    UnknownCountryCode(String),
    #[error("this number has the wrong length for its country")]
    ImpossibleLength,
    #[error("this is not a phone number")]
    Unparseable,
}

impl PhoneNumber {
    pub fn parse(input: &str) -> Result<Self, PhoneNumberError> {
        let (number, written) = Self::parse_once(input)?;
        // The library drops what it takes for a national prefix or carrier code after the
        // country code, which is right for `+44 (0)20 7946 0958`. A number it rewrote must
        // parse to itself again, or it is not the number that was written (`+86 1113 800 138
        // 000` became `+860138000`, which does not even parse): refused, not sent to.
        if number.e164[1..] != written {
            match Self::parse_once(&number.e164) {
                Ok((again, _)) if again.e164 == number.e164 => {}
                _ => return Err(PhoneNumberError::Unparseable),
            }
        }
        Ok(number)
    }

    /// One pass of the library, and the digits that were written.
    fn parse_once(input: &str) -> Result<(Self, String), PhoneNumberError> {
        let trimmed = input.trim();
        let rest = trimmed
            .strip_prefix('+')
            .ok_or(PhoneNumberError::MissingPlus)?;
        // Checked before the library sees the text: it would read vanity letters
        // (`1-800-FLOWERS`) and extensions as digits.
        if !rest
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '.' | '-' | '(' | ')'))
        {
            return Err(PhoneNumberError::InvalidCharacters);
        }
        let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
        if digits.len() > MAX_E164_DIGITS {
            return Err(PhoneNumberError::TooLong);
        }
        // Written as the library would keep it: the same answer without the library's parse.
        if digits.len() == rest.len() {
            if let Ok(parsed) = regions::parse_e164(&digits) {
                let number = Self::possible(
                    format!("+{digits}"),
                    parsed.calling_code,
                    &digits[parsed.calling_code.to_string().len()..],
                    parsed.country,
                )?;
                let number = Self {
                    line: Some(parsed.line),
                    ..number
                };
                return Ok((number, digits));
            }
        }
        Self::parse_by_library(trimmed, digits)
    }

    /// The library's type of the number's line (`number_type`), through [`regions`] where it
    /// answers as the library would, else by the library's own parse.
    pub(crate) fn number_type(&self) -> phonenumber::Type {
        let digits = &self.e164[1..];
        let kind = match self.line {
            Some(line) => regions::type_of_line(line, digits),
            None => regions::number_type(digits),
        };
        if let Ok(kind) = kind {
            return kind;
        }
        phonenumber::parse(None, &self.e164).map_or(phonenumber::Type::Unknown, |parsed| {
            parsed.number_type(&DATABASE)
        })
    }

    /// [`PhoneNumber::parse_once`] by the library alone: any written form.
    fn parse_by_library(trimmed: &str, digits: String) -> Result<(Self, String), PhoneNumberError> {
        let parsed = phonenumber::parse(None, trimmed).map_err(|error| match error {
            phonenumber::ParseError::InvalidCountryCode => {
                PhoneNumberError::UnknownCountryCode(digits.chars().take(3).collect())
            }
            _ => PhoneNumberError::Unparseable,
        })?;
        let number = Self::possible(
            parsed.format().mode(Mode::E164).to_string(),
            parsed.code().value(),
            &parsed.national().to_string(),
            country_of(&parsed),
        )?;
        Ok((number, digits))
    }

    /// The parsed number, when its national number has a length its country uses.
    fn possible(
        e164: String,
        calling_code: u16,
        national: &str,
        country: Option<String>,
    ) -> Result<Self, PhoneNumberError> {
        let regions = DATABASE
            .by_code(&calling_code)
            .ok_or_else(|| PhoneNumberError::UnknownCountryCode(calling_code.to_string()))?;
        let length = national.len() as u16;
        let possible = regions
            .iter()
            .any(|region| possible_lengths(region).any(|possible| possible == length));
        if !possible {
            return Err(PhoneNumberError::ImpossibleLength);
        }
        Ok(Self {
            e164,
            calling_code,
            country: Some(country),
            line: None,
        })
    }

    /// A number this service stored after [`PhoneNumber::parse`] accepted it, read back. Its
    /// E.164 text is trusted, so only its calling code is worked out: E.164 calling codes are
    /// prefix-free, so the first one to three digits that name one are it. Parsing it again ran
    /// the metadata's regular expressions for every message a dispatcher claims. Text that is
    /// not `+` and digits, or has no known calling code, is refused (a corrupt row).
    pub fn from_stored(e164: &str) -> Result<Self, PhoneNumberError> {
        let digits = e164
            .strip_prefix('+')
            .ok_or(PhoneNumberError::MissingPlus)?;
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(PhoneNumberError::InvalidCharacters);
        }
        if digits.len() > MAX_E164_DIGITS {
            return Err(PhoneNumberError::TooLong);
        }
        // No calling code starts with 0 (and "01" would read as 1).
        let calling_code = (1..=3)
            .filter(|_| !digits.starts_with('0'))
            .filter_map(|length| digits.get(..length)?.parse::<u16>().ok())
            .find(|code| DATABASE.by_code(code).is_some())
            .ok_or_else(|| {
                PhoneNumberError::UnknownCountryCode(digits.chars().take(3).collect())
            })?;
        Ok(Self {
            e164: e164.to_owned(),
            calling_code,
            country: None,
            line: None,
        })
    }

    /// `+442079460958`.
    pub fn as_str(&self) -> &str {
        &self.e164
    }

    /// The country calling code without the `+` (44 for the UK, 1 for all of North America).
    pub fn calling_code(&self) -> u16 {
        self.calling_code
    }

    /// The ISO 3166 country of the number when the library can tell it (North American
    /// numbers outside assigned ranges share `+1` and are attributed to its main country, US).
    pub fn country(&self) -> Option<String> {
        match &self.country {
            Some(country) => country.clone(),
            None => phonenumber::parse(None, &self.e164)
                .ok()
                .and_then(|parsed| country_of(&parsed)),
        }
    }

    /// The form that may appear in logs: country code and area kept, the middle hidden, the
    /// last four digits kept (`+1555***4567`), enough to tell numbers apart in an incident.
    pub fn masked(&self) -> String {
        mask(&self.e164)
    }
}

fn country_of(parsed: &phonenumber::PhoneNumber) -> Option<String> {
    parsed
        .country()
        .id()
        .map(|id| id.as_ref().to_owned())
        .or_else(|| regions::main_region(parsed.code().value()))
}

/// Every national-number length the country uses for any kind of number. The metadata keeps
/// them per kind (mobile, fixed line, ...) and leaves the general list empty.
fn possible_lengths(region: &phonenumber::Metadata) -> impl Iterator<Item = u16> + '_ {
    let descriptors = region.descriptors();
    [
        Some(descriptors.general()),
        descriptors.fixed_line(),
        descriptors.mobile(),
        descriptors.toll_free(),
        descriptors.premium_rate(),
        descriptors.shared_cost(),
        descriptors.personal_number(),
        descriptors.voip(),
        descriptors.pager(),
        descriptors.uan(),
        descriptors.voicemail(),
    ]
    .into_iter()
    .flatten()
    .flat_map(|descriptor| descriptor.possible_length().iter().copied())
}

/// Masks any E.164-looking text the way [`PhoneNumber::masked`] does; for numbers that arrive
/// from outside (callbacks) before they are parsed. At least [`MASK_HIDDEN`] characters are
/// hidden: a short number (`+29012345`, St Helena) shows fewer of its last digits rather than
/// all of them.
pub fn mask(e164: &str) -> String {
    const HEAD: usize = 5;
    let chars: Vec<char> = e164.chars().collect();
    if chars.len() <= HEAD + MASK_HIDDEN {
        return "***".to_owned();
    }
    let tail = (chars.len() - HEAD - MASK_HIDDEN).min(4);
    let head: String = chars[..HEAD].iter().collect();
    let tail: String = chars[chars.len() - tail..].iter().collect();
    format!("{head}***{tail}")
}

/// Characters of a number that [`mask`] always hides.
const MASK_HIDDEN: usize = 3;

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.e164)
    }
}

/// Debug is masked so that a stray `{:?}` in a log line cannot leak a number.
impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneNumberError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PhoneNumber> for String {
    fn from(number: PhoneNumber) -> Self {
        number.e164
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every example number of the metadata, written as clients write them and with the
    /// mistakes they make (a trunk prefix, a digit too few or too many, other leading digits),
    /// and every North American area code: parsed with the shortcut of [`regions`] and by the
    /// library alone, the answers must be the same, country and line type included.
    #[test]
    fn agrees_with_the_library_on_every_example_number() {
        let mut inputs = Vec::new();
        for region in DATABASE.iter() {
            let code = region.country_code();
            let d = region.descriptors();
            let examples = [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.shared_cost(),
                d.personal_number(),
                d.voip(),
                d.pager(),
                d.uan(),
                d.voicemail(),
            ]
            .into_iter()
            .flatten()
            .filter_map(|descriptor| descriptor.example());
            for example in examples {
                let mut variants = vec![
                    example.to_owned(),
                    format!("0{example}"),
                    format!("{example}5"),
                    example[..example.len() - 1].to_owned(),
                ];
                variants.extend(region.national_prefix().map(|p| format!("{p}{example}")));
                variants.extend((0..10).map(|digit| format!("{digit}{}", &example[1..])));
                inputs.extend(
                    variants
                        .into_iter()
                        .map(|national| format!("+{code}{national}")),
                );
            }
        }
        inputs.extend((200..1000).map(|area| format!("+1{area}5550123")));
        inputs.extend((200..1000).map(|area| format!("+1{area}2345678")));
        let mut shortcut = 0;
        // Longer ones are refused before either parse.
        inputs.retain(|input| input.len() <= MAX_E164_DIGITS + 1);
        for input in &inputs {
            let digits = &input[1..];
            shortcut += usize::from(regions::parse_e164(digits).is_ok());
            let both = PhoneNumber::parse_once(input);
            let library = PhoneNumber::parse_by_library(input, digits.to_owned());
            match (&both, &library) {
                (Ok((number, _)), Ok((expected, _))) => {
                    assert_eq!(number.e164, expected.e164, "{input}");
                    assert_eq!(number.calling_code, expected.calling_code, "{input}");
                    assert_eq!(number.country, expected.country, "{input}");
                    // The line's type, as the library tells it from the number kept.
                    let kind = phonenumber::parse(None, &number.e164)
                        .map(|parsed| parsed.number_type(&DATABASE))
                        .ok();
                    assert_eq!(Some(number.number_type()), kind, "{input}");
                }
                _ => assert_eq!(both.err(), library.err(), "{input}"),
            }
        }
        // Most are written as the library keeps them, or the shortcut was never tried.
        assert!(
            shortcut * 2 > inputs.len(),
            "{shortcut} of {}",
            inputs.len()
        );
    }

    #[test]
    fn accepts_the_seed_example_in_the_fictional_555_range() {
        let number = PhoneNumber::parse("+15551234567").unwrap();
        assert_eq!(number.as_str(), "+15551234567");
        assert_eq!(number.calling_code(), 1);
        assert_eq!(number.country().as_deref(), Some("US"));
    }

    #[test]
    fn normalises_spaces_and_punctuation_to_e164() {
        let number = PhoneNumber::parse("+44 20 7946 0958").unwrap();
        assert_eq!(number.as_str(), "+442079460958");
        assert_eq!(number.country().as_deref(), Some("GB"));
        assert_eq!(
            PhoneNumber::parse("+1 (415) 555-0100").unwrap().as_str(),
            "+14155550100"
        );
    }

    #[test]
    fn keeps_leading_zeros_of_italian_numbers() {
        assert_eq!(
            PhoneNumber::parse("+39 06 1234 5678").unwrap().as_str(),
            "+390612345678"
        );
    }

    #[test]
    fn rejects_a_number_without_country_code() {
        assert_eq!(
            PhoneNumber::parse("5551234567"),
            Err(PhoneNumberError::MissingPlus)
        );
    }

    #[test]
    fn rejects_a_number_too_short_for_its_country() {
        assert!(PhoneNumber::parse("+1 555 123").is_err());
    }

    #[test]
    fn rejects_letters() {
        assert_eq!(
            PhoneNumber::parse("+1800FLOWERS"),
            Err(PhoneNumberError::InvalidCharacters)
        );
        assert_eq!(
            PhoneNumber::parse("+1555abc4567"),
            Err(PhoneNumberError::InvalidCharacters)
        );
    }

    #[test]
    fn rejects_more_than_fifteen_digits() {
        assert_eq!(
            PhoneNumber::parse("+1234567890123456"),
            Err(PhoneNumberError::TooLong)
        );
    }

    #[test]
    fn rejects_unknown_country_codes() {
        assert!(matches!(
            PhoneNumber::parse("+9991234567"),
            Err(PhoneNumberError::UnknownCountryCode(_))
        ));
    }

    #[test]
    fn rejects_empty_and_garbage() {
        assert!(PhoneNumber::parse("").is_err());
        assert!(PhoneNumber::parse("+").is_err());
        assert!(PhoneNumber::parse("+--").is_err());
    }

    #[test]
    fn masks_the_middle_of_the_number_in_logs() {
        let number = PhoneNumber::parse("+15551234567").unwrap();
        assert_eq!(number.masked(), "+1555***4567");
        assert_eq!(format!("{number:?}"), "PhoneNumber(+1555***4567)");
    }

    /// Found by the `phone` fuzz target: the mask showed every digit of an eight-digit number
    /// (`+82138000`, and St Helena's `+29012345`).
    #[test]
    fn a_short_number_is_never_shown_whole() {
        let number = PhoneNumber::parse("+82138000").unwrap();
        assert_eq!(number.masked(), "+8213***0");
        assert_eq!(mask("+29012345"), "+2901***5");
        assert_eq!(mask("+3541234567"), "+3541***567");
        assert_eq!(mask("+6831234"), "***");
    }

    /// Found by the `phone` fuzz target: what follows `+86` was read as a carrier code and
    /// dropped, leaving another number, or none.
    #[test]
    fn a_number_the_library_rewrites_must_parse_to_itself() {
        for text in ["+861113800138000", "+86000 01381380", "+8601234568040"] {
            assert_eq!(
                PhoneNumber::parse(text),
                Err(PhoneNumberError::Unparseable),
                "{text}"
            );
        }
        // A trunk zero written after the country code is still dropped, as people write it.
        assert_eq!(
            PhoneNumber::parse("+44 (0)20 7946 0958").unwrap().as_str(),
            "+442079460958"
        );
    }

    #[test]
    fn a_stored_number_reads_back_as_it_was_parsed() {
        for text in [
            "+15551234567",
            "+442079460958",
            "+390612345678",
            "+79161234567",
            "+2348031234567",
            "+35312345678",
            "+8613812345678",
            "+12423570000",
        ] {
            let parsed = PhoneNumber::parse(text).unwrap();
            let stored = PhoneNumber::from_stored(parsed.as_str()).unwrap();
            assert_eq!(stored, parsed, "{text}");
            assert_eq!(stored.calling_code(), parsed.calling_code(), "{text}");
            assert_eq!(stored.country(), parsed.country(), "{text}");
        }
    }

    #[test]
    fn a_corrupt_stored_number_is_refused() {
        assert_eq!(
            PhoneNumber::from_stored("15551234567"),
            Err(PhoneNumberError::MissingPlus)
        );
        for text in ["+", "+1 555 123", "+1555abc4567"] {
            assert_eq!(
                PhoneNumber::from_stored(text),
                Err(PhoneNumberError::InvalidCharacters),
                "{text}"
            );
        }
        assert_eq!(
            PhoneNumber::from_stored("+1234567890123456"),
            Err(PhoneNumberError::TooLong)
        );
        assert!(matches!(
            PhoneNumber::from_stored("+0123456789"),
            Err(PhoneNumberError::UnknownCountryCode(_))
        ));
    }

    #[test]
    fn deserialises_only_valid_numbers() {
        let number: PhoneNumber = serde_json::from_str("\"+44 20 7946 0958\"").unwrap();
        assert_eq!(number.as_str(), "+442079460958");
        assert!(serde_json::from_str::<PhoneNumber>("\"12\"").is_err());
    }
}
