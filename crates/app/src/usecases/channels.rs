//! What a verification needs to go out on each channel, checked when it starts rather than
//! found missing by the dispatcher: a provider that can send on it (a call needs
//! `TWILIO_VOICE_FROM`), and for WhatsApp an approved template in the code's language
//! (`TWILIO_WHATSAPP_CONTENT_SIDS`), since WhatsApp refuses a free-text code (Twilio's 63016).

use std::fmt;

use domain::Channel;

/// The channels this deployment's providers can send on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferedChannels {
    pub sms: bool,
    pub whatsapp: bool,
    pub voice: bool,
}

impl Default for OfferedChannels {
    /// Texts, as every provider sent before calls existed.
    fn default() -> Self {
        Self {
            sms: true,
            whatsapp: true,
            voice: false,
        }
    }
}

impl OfferedChannels {
    pub fn offers(&self, channel: Channel) -> bool {
        match channel {
            Channel::Sms => self.sms,
            Channel::Whatsapp => self.whatsapp,
            Channel::Voice => self.voice,
        }
    }
}

/// Approved WhatsApp authentication templates by locale: Twilio Content SIDs (`HX` and 32 hex
/// digits), whose one variable `{{1}}` is the code.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WhatsappTemplates {
    /// In the order configured; locales compared without regard to case.
    by_locale: Vec<(String, String)>,
}

impl fmt::Debug for WhatsappTemplates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.by_locale.iter().map(|(l, s)| (l, s)))
            .finish()
    }
}

/// The locale every lookup falls back to last.
const FALLBACK_LOCALE: &str = "en";

impl WhatsappTemplates {
    /// `en:HX...,pt-BR:HX...`.
    ///
    /// # Errors
    /// One sentence naming the pair that is wrong: no `:`, an empty or malformed locale, a SID
    /// that is not `HX` and 32 hex digits, or a locale named twice.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut by_locale: Vec<(String, String)> = Vec::new();
        for pair in text
            .split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
        {
            let (locale, sid) = pair
                .split_once(':')
                .map(|(locale, sid)| (locale.trim(), sid.trim()))
                .ok_or_else(|| format!("`{pair}` is not locale:HX..."))?;
            let well_formed_locale = !locale.is_empty()
                && locale.len() <= 16
                && locale
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !well_formed_locale {
                return Err(format!("`{locale}` is not a locale such as en or pt-BR"));
            }
            if !is_content_sid(sid) {
                return Err(format!(
                    "the content sid for {locale} must be HX followed by 32 hexadecimal digits"
                ));
            }
            if by_locale
                .iter()
                .any(|(known, _)| known.eq_ignore_ascii_case(locale))
            {
                return Err(format!("names {locale} twice"));
            }
            by_locale.push((locale.to_owned(), sid.to_owned()));
        }
        Ok(Self { by_locale })
    }

    pub fn is_empty(&self) -> bool {
        self.by_locale.is_empty()
    }

    /// The template for `locale`: the locale itself, then its language (`fr` for `fr-CA`), then
    /// English. The locale it was configured for, and its SID.
    pub fn resolve(&self, locale: Option<&str>) -> Option<(&str, &str)> {
        let find = |wanted: &str| {
            self.by_locale
                .iter()
                .find(|(known, _)| known.replace('_', "-").eq_ignore_ascii_case(wanted))
                .map(|(locale, sid)| (locale.as_str(), sid.as_str()))
        };
        let requested = locale.map(|locale| locale.trim().replace('_', "-"));
        let language = requested
            .as_deref()
            .map(|locale| locale.split('-').next().unwrap_or(locale));
        requested
            .as_deref()
            .and_then(find)
            .or_else(|| language.and_then(find))
            .or_else(|| find(FALLBACK_LOCALE))
    }
}

/// `HX` and 32 hexadecimal digits, as Twilio's Content API names a template.
fn is_content_sid(sid: &str) -> bool {
    sid.strip_prefix("HX")
        .is_some_and(|hex| hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EN: &str = "HX0123456789abcdef0123456789abcdef";
    const FR: &str = "HXfedcba9876543210fedcba9876543210";

    #[test]
    fn a_locale_finds_its_template_then_its_languages_then_englishs() {
        let templates = WhatsappTemplates::parse(&format!(" en:{EN} , fr:{FR} ")).unwrap();
        assert_eq!(templates.resolve(Some("fr")), Some(("fr", FR)));
        assert_eq!(templates.resolve(Some("fr-CA")), Some(("fr", FR)));
        assert_eq!(templates.resolve(Some("FR_ca")), Some(("fr", FR)));
        assert_eq!(templates.resolve(Some("de")), Some(("en", EN)));
        assert_eq!(templates.resolve(None), Some(("en", EN)));

        let french_only = WhatsappTemplates::parse(&format!("fr:{FR}")).unwrap();
        assert_eq!(french_only.resolve(Some("de")), None);
        assert_eq!(french_only.resolve(None), None);
        assert_eq!(WhatsappTemplates::default().resolve(Some("en")), None);
    }

    #[test]
    fn a_malformed_pair_is_refused_saying_what_is_wrong() {
        for (text, complaint) in [
            ("en", "is not locale:HX"),
            (":HX0123456789abcdef0123456789abcdef", "is not a locale"),
            ("en:HX0123", "32 hexadecimal digits"),
            ("en:MG0123456789abcdef0123456789abcdef", "HX followed"),
            ("en:HX0123456789abcdef0123456789abcdeg", "hexadecimal"),
            (&format!("en:{EN},EN:{FR}"), "names EN twice"),
        ] {
            let error = WhatsappTemplates::parse(text).unwrap_err();
            assert!(error.contains(complaint), "{text}: {error}");
        }
    }

    #[test]
    fn voice_is_offered_only_when_a_provider_can_call() {
        let texts = OfferedChannels::default();
        assert!(texts.offers(Channel::Sms) && texts.offers(Channel::Whatsapp));
        assert!(!texts.offers(Channel::Voice));
    }
}
