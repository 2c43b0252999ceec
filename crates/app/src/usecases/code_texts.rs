//! How a code's text is chosen and finished: which language it is written in when the client
//! does not say (the number's country, unless `VERIFY_AUTO_LOCALE=false`), the brand it names,
//! and the autofill lines an SMS ends with (`VERIFY_APP_DOMAIN`, a request's `app_hash`).

use domain::language::{language_of_country, FALLBACK_LOCALE};
use domain::{with_autofill, AppDomain, AppHash, Brand, Channel, PhoneNumber};

/// What the operator configured for the texts of codes.
#[derive(Debug, Clone)]
pub struct CodeTexts {
    /// Named by every built-in text (`VERIFY_BRAND`).
    pub brand: Brand,
    /// A number's country chooses the language when the request names none
    /// (`VERIFY_AUTO_LOCALE`, on unless `false`).
    pub auto_locale: bool,
    /// Set: SMS codes end with the origin-bound line `@DOMAIN #CODE` (`VERIFY_APP_DOMAIN`).
    pub app_domain: Option<AppDomain>,
}

impl Default for CodeTexts {
    fn default() -> Self {
        Self {
            brand: Brand::default(),
            auto_locale: true,
            app_domain: None,
        }
    }
}

impl CodeTexts {
    /// The locale to write a code to `to` in: the one requested, else the language of the
    /// number's country, else English. The templates then fall back from a locale they lack
    /// (`fr-CA` to `fr`, then English); an operator's override of the template without its
    /// translations has none of these, and its own text is used.
    pub fn locale_for(&self, requested: Option<&str>, to: &PhoneNumber) -> String {
        if let Some(requested) = requested {
            return requested.to_owned();
        }
        let by_country = self
            .auto_locale
            .then(|| to.country())
            .flatten()
            .and_then(|country| language_of_country(&country));
        by_country.unwrap_or(FALLBACK_LOCALE).to_owned()
    }

    /// `text` as sent on `channel`: an SMS with its autofill lines (the app hash, then the
    /// origin-bound line, last); any other channel's as it is, since neither browsers nor the
    /// SMS Retriever API read those there.
    pub fn finish(
        &self,
        text: String,
        code: &str,
        channel: Channel,
        app_hash: Option<&AppHash>,
    ) -> String {
        if channel == Channel::Sms {
            with_autofill(&text, code, app_hash, self.app_domain.as_ref())
        } else {
            text
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
    fn without_a_locale_the_number_s_country_chooses_unless_turned_off() {
        let texts = CodeTexts::default();
        assert_eq!(texts.locale_for(None, &number("+33612345678")), "fr");
        assert_eq!(texts.locale_for(None, &number("+5511987654321")), "pt-BR");
        // Estonia: no text in Estonian, and none in another language is pressed on it.
        assert_eq!(texts.locale_for(None, &number("+3725123456")), "en");
        assert_eq!(texts.locale_for(Some("de"), &number("+33612345678")), "de");

        let off = CodeTexts {
            auto_locale: false,
            ..CodeTexts::default()
        };
        assert_eq!(off.locale_for(None, &number("+33612345678")), "en");
        assert_eq!(
            off.locale_for(Some("fr-CA"), &number("+15551234567")),
            "fr-CA"
        );
    }

    #[test]
    fn only_an_sms_gets_the_autofill_lines() {
        let texts = CodeTexts {
            app_domain: Some(AppDomain::parse("example.com").unwrap()),
            ..CodeTexts::default()
        };
        let hash = AppHash::parse("FA+9qCX9VSu").unwrap();
        assert_eq!(
            texts.finish("Code 42.".into(), "42", Channel::Sms, Some(&hash)),
            "Code 42.\nFA+9qCX9VSu\n@example.com #42"
        );
        assert_eq!(
            texts.finish("Code 42.".into(), "42", Channel::Whatsapp, Some(&hash)),
            "Code 42."
        );
    }
}
