//! Which destination countries may receive messages: the first guard against SMS pumping,
//! whose fraudsters favour expensive destinations a service has no users in.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::PhoneNumber;

/// The ISO 3166 countries messages may go to; [`CountryAllowList::everywhere`] when none are
/// configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountryAllowList {
    /// `None`: every country.
    countries: Option<BTreeSet<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an ISO 3166 country code such as US or GB")]
pub struct UnknownCountry(pub String);

/// A number in a country that is not on the list; names the country so that the caller can
/// tell the user which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("messages to {destination} are not allowed; allowed countries: {allowed}")]
pub struct CountryNotAllowed {
    /// The ISO code (`DE`), or the calling code (`+882`) of a number that belongs to no
    /// country.
    pub destination: String,
    pub allowed: String,
}

impl CountryAllowList {
    pub fn everywhere() -> Self {
        Self::default()
    }

    /// Parses comma-separated ISO codes (`US, ca,GB`); case and spaces do not matter.
    pub fn parse(text: &str) -> Result<Self, UnknownCountry> {
        let mut countries = BTreeSet::new();
        for code in text
            .split(',')
            .map(str::trim)
            .filter(|code| !code.is_empty())
        {
            let upper = code.to_ascii_uppercase();
            // The phone-number metadata's list is the one `PhoneNumber::country` answers from,
            // so a code it does not know could never match.
            if phonenumber::country::Id::from_str(&upper).is_err() {
                return Err(UnknownCountry(code.to_owned()));
            }
            countries.insert(upper);
        }
        if countries.is_empty() {
            return Err(UnknownCountry(text.trim().to_owned()));
        }
        Ok(Self {
            countries: Some(countries),
        })
    }

    pub fn admits(&self, number: &PhoneNumber) -> Result<(), CountryNotAllowed> {
        let Some(countries) = &self.countries else {
            return Ok(());
        };
        match number.country() {
            Some(country) if countries.contains(&country) => Ok(()),
            country => Err(CountryNotAllowed {
                destination: country.unwrap_or_else(|| format!("+{}", number.calling_code())),
                allowed: self.to_string(),
            }),
        }
    }
}

impl fmt::Display for CountryAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.countries {
            None => f.write_str("all"),
            Some(countries) => {
                let list: Vec<&str> = countries.iter().map(String::as_str).collect();
                f.write_str(&list.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> PhoneNumber {
        PhoneNumber::parse(text).unwrap()
    }

    #[test]
    fn without_a_list_every_country_is_allowed() {
        assert_eq!(
            CountryAllowList::everywhere().admits(&number("+442079460958")),
            Ok(())
        );
    }

    #[test]
    fn a_number_outside_the_list_is_refused_naming_its_country() {
        let list = CountryAllowList::parse("us, CA").unwrap();
        assert_eq!(list.admits(&number("+15551234567")), Ok(()));
        assert_eq!(
            list.admits(&number("+442079460958")),
            Err(CountryNotAllowed {
                destination: "GB".into(),
                allowed: "CA, US".into()
            })
        );
    }

    #[test]
    fn unknown_or_empty_codes_are_refused() {
        assert_eq!(
            CountryAllowList::parse("US,XX"),
            Err(UnknownCountry("XX".into()))
        );
        assert!(CountryAllowList::parse(" , ").is_err());
        assert!(CountryAllowList::parse("USA").is_err());
    }
}
