//! Line types: what kind of line a number is, judged from the number itself with the
//! phone-number metadata. Premium-rate and similar lines earn their owner money per message
//! and are nobody's phone, so pumping favours them and a code to one is never needed.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use phonenumber::Type;
use serde::{Deserialize, Serialize};

use crate::PhoneNumber;

/// libphonenumber's number types, by their snake_case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineType {
    FixedLine,
    Mobile,
    /// Where the number alone cannot tell (the United States, among others).
    FixedLineOrMobile,
    TollFree,
    PremiumRate,
    SharedCost,
    Voip,
    PersonalNumber,
    Pager,
    /// Universal access numbers ("company numbers").
    Uan,
    Voicemail,
    /// A number possible for its country (the right length) in no range the metadata knows:
    /// not valid, such as the North American 555 numbers used in tests.
    Unknown,
}

impl LineType {
    pub const ALL: [LineType; 12] = [
        LineType::FixedLine,
        LineType::Mobile,
        LineType::FixedLineOrMobile,
        LineType::TollFree,
        LineType::PremiumRate,
        LineType::SharedCost,
        LineType::Voip,
        LineType::PersonalNumber,
        LineType::Pager,
        LineType::Uan,
        LineType::Voicemail,
        LineType::Unknown,
    ];

    /// The type of `number`'s line: from the region its parse found, or, for a stored number
    /// (which keeps only its E.164 text), by reading it again; the caller asks once per request.
    pub fn of(number: &PhoneNumber) -> Self {
        match number.number_type() {
            Type::FixedLine => LineType::FixedLine,
            Type::Mobile => LineType::Mobile,
            Type::FixedLineOrMobile => LineType::FixedLineOrMobile,
            Type::TollFree => LineType::TollFree,
            Type::PremiumRate => LineType::PremiumRate,
            Type::SharedCost => LineType::SharedCost,
            Type::Voip => LineType::Voip,
            Type::PersonalNumber => LineType::PersonalNumber,
            Type::Pager => LineType::Pager,
            Type::Uan => LineType::Uan,
            Type::Voicemail => LineType::Voicemail,
            // Kinds of short numbers, which a number that parsed as E.164 is not.
            Type::Emergency
            | Type::ShortCode
            | Type::StandardRate
            | Type::Carrier
            | Type::NoInternational
            | Type::Unknown => LineType::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LineType::FixedLine => "fixed_line",
            LineType::Mobile => "mobile",
            LineType::FixedLineOrMobile => "fixed_line_or_mobile",
            LineType::TollFree => "toll_free",
            LineType::PremiumRate => "premium_rate",
            LineType::SharedCost => "shared_cost",
            LineType::Voip => "voip",
            LineType::PersonalNumber => "personal_number",
            LineType::Pager => "pager",
            LineType::Uan => "uan",
            LineType::Voicemail => "voicemail",
            LineType::Unknown => "unknown",
        }
    }
}

impl fmt::Display for LineType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a line type; line types: fixed_line, mobile, fixed_line_or_mobile, toll_free, premium_rate, shared_cost, voip, personal_number, pager, uan, voicemail, unknown")]
pub struct UnknownLineType(pub String);

impl FromStr for LineType {
    type Err = UnknownLineType;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let name = text.trim().to_ascii_lowercase();
        LineType::ALL
            .into_iter()
            .find(|line_type| line_type.as_str() == name)
            .ok_or_else(|| UnknownLineType(text.trim().to_owned()))
    }
}

/// The line types codes are refused to (`DENY_LINE_TYPES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyLineTypes(BTreeSet<LineType>);

impl Default for DenyLineTypes {
    /// The lines that cannot be a user's phone, or that charge the sender: premium rate,
    /// shared cost, universal access, pagers and voicemail.
    fn default() -> Self {
        Self(BTreeSet::from([
            LineType::PremiumRate,
            LineType::SharedCost,
            LineType::Uan,
            LineType::Pager,
            LineType::Voicemail,
        ]))
    }
}

impl DenyLineTypes {
    /// None refused.
    pub fn none() -> Self {
        Self(BTreeSet::new())
    }

    pub fn denies(&self, line_type: LineType) -> bool {
        self.0.contains(&line_type)
    }

    pub fn iter(&self) -> impl Iterator<Item = LineType> + '_ {
        self.0.iter().copied()
    }
}

impl FromStr for DenyLineTypes {
    type Err = UnknownLineType;

    /// Comma-separated names (`premium_rate, pager`); empty refuses none.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl fmt::Display for DenyLineTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(LineType::as_str).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_type(number: &str) -> LineType {
        LineType::of(&PhoneNumber::parse(number).unwrap())
    }

    #[test]
    fn premium_rate_numbers_of_several_countries_are_premium_rate() {
        for number in [
            "+449012345678", // GB 09xx
            "+19002345678",  // US 900
            "+499001234567", // DE 0900
            "+33891123456",  // FR 089x
        ] {
            assert_eq!(line_type(number), LineType::PremiumRate, "{number}");
        }
    }

    #[test]
    fn other_kinds_of_lines_are_told_apart() {
        assert_eq!(line_type("+447400123456"), LineType::Mobile);
        assert_eq!(line_type("+441212345678"), LineType::FixedLine);
        assert_eq!(line_type("+12015550123"), LineType::FixedLineOrMobile);
        assert_eq!(line_type("+448001234567"), LineType::TollFree);
        assert_eq!(line_type("+447640123456"), LineType::Pager);
        assert_eq!(line_type("+445512345678"), LineType::Uan);
        assert_eq!(line_type("+33884012345"), LineType::SharedCost);
        assert_eq!(line_type("+49177991234567"), LineType::Voicemail);
    }

    #[test]
    fn a_possible_number_in_no_known_range_is_unknown() {
        // The fictional 555 range: possible for +1, valid nowhere.
        assert_eq!(line_type("+15551234567"), LineType::Unknown);
    }

    #[test]
    fn the_default_refuses_lines_nobody_reads_codes_on_and_unknown_passes() {
        let deny = DenyLineTypes::default();
        assert_eq!(
            deny.to_string(),
            "premium_rate,shared_cost,pager,uan,voicemail"
        );
        assert!(deny.denies(LineType::PremiumRate));
        assert!(!deny.denies(LineType::Mobile));
        assert!(!deny.denies(LineType::Unknown));
        assert!(!deny.denies(LineType::Voip));
    }

    #[test]
    fn deny_line_types_read_as_comma_separated_snake_case_names() {
        let deny: DenyLineTypes = " premium_rate, Unknown ,".parse().unwrap();
        assert!(deny.denies(LineType::Unknown));
        assert!(!deny.denies(LineType::Pager));
        assert_eq!("".parse::<DenyLineTypes>(), Ok(DenyLineTypes::none()));
        assert_eq!(
            "premium_rate,premium".parse::<DenyLineTypes>(),
            Err(UnknownLineType("premium".into()))
        );
        for line_type in LineType::ALL {
            assert_eq!(line_type.as_str().parse::<LineType>(), Ok(line_type));
            assert_eq!(
                serde_json_name(line_type),
                line_type.as_str(),
                "serde and as_str agree"
            );
        }
    }

    fn serde_json_name(line_type: LineType) -> String {
        serde_json::to_value(line_type)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }
}
