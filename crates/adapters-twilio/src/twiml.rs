//! The TwiML of a verification call: what Twilio's `<Say>` speaks, in the text's language,
//! with a pause before each line so that a code read digit by digit can be followed (and
//! written down) by the person who picked up.
//!
//! The document holds the code: it is built at send time and never logged.

/// Twilio's `<Say>` `language` and the voice that speaks it, by locale: Google's standard
/// voices, which Twilio offers for every language here. The first entry of a language is what
/// its other variants fall back to (`fr-CA` speaks as `fr`).
const VOICES: &[(&str, &str, &str)] = &[
    ("en", "en-US", "Google.en-US-Standard-C"),
    ("en-GB", "en-GB", "Google.en-GB-Standard-A"),
    ("ar", "ar-XA", "Google.ar-XA-Standard-A"),
    ("bn", "bn-IN", "Google.bn-IN-Standard-A"),
    ("cs", "cs-CZ", "Google.cs-CZ-Standard-A"),
    ("da", "da-DK", "Google.da-DK-Standard-A"),
    ("de", "de-DE", "Google.de-DE-Standard-A"),
    ("el", "el-GR", "Google.el-GR-Standard-A"),
    ("es", "es-ES", "Google.es-ES-Standard-A"),
    ("fi", "fi-FI", "Google.fi-FI-Standard-A"),
    ("fr", "fr-FR", "Google.fr-FR-Standard-A"),
    ("he", "he-IL", "Google.he-IL-Standard-A"),
    ("hi", "hi-IN", "Google.hi-IN-Standard-A"),
    ("hu", "hu-HU", "Google.hu-HU-Standard-A"),
    ("id", "id-ID", "Google.id-ID-Standard-A"),
    ("it", "it-IT", "Google.it-IT-Standard-A"),
    ("ja", "ja-JP", "Google.ja-JP-Standard-A"),
    ("ko", "ko-KR", "Google.ko-KR-Standard-A"),
    ("ms", "ms-MY", "Google.ms-MY-Standard-A"),
    ("nb", "nb-NO", "Google.nb-NO-Standard-A"),
    ("nl", "nl-NL", "Google.nl-NL-Standard-A"),
    ("pl", "pl-PL", "Google.pl-PL-Standard-A"),
    ("pt", "pt-PT", "Google.pt-PT-Standard-A"),
    ("pt-BR", "pt-BR", "Google.pt-BR-Standard-A"),
    ("ro", "ro-RO", "Google.ro-RO-Standard-A"),
    ("ru", "ru-RU", "Google.ru-RU-Standard-A"),
    ("sv", "sv-SE", "Google.sv-SE-Standard-A"),
    ("th", "th-TH", "Google.th-TH-Standard-A"),
    ("tr", "tr-TR", "Google.tr-TR-Standard-A"),
    ("uk", "uk-UA", "Google.uk-UA-Standard-A"),
    ("vi", "vi-VN", "Google.vi-VN-Standard-A"),
    ("zh-CN", "cmn-CN", "Google.cmn-CN-Standard-A"),
    ("zh-HK", "yue-HK", "Google.yue-HK-Standard-A"),
    ("zh", "cmn-CN", "Google.cmn-CN-Standard-A"),
];

/// `<Say>`'s `language` and `voice` for `locale`: the locale itself, then its language, then
/// English.
pub(crate) fn voice_for(locale: Option<&str>) -> (&'static str, &'static str) {
    let find = |wanted: &str| {
        VOICES
            .iter()
            .find(|(locale, _, _)| locale.eq_ignore_ascii_case(wanted))
            .map(|(_, language, voice)| (*language, *voice))
    };
    locale
        .and_then(|locale| {
            let language = locale.split(['-', '_']).next().unwrap_or(locale);
            find(&locale.replace('_', "-")).or_else(|| find(language))
        })
        .unwrap_or(("en-US", "Google.en-US-Standard-C"))
}

/// `<Response>` with a pause, then each non-blank line of `text` spoken in `locale`'s voice,
/// a pause between lines.
pub(crate) fn say(text: &str, locale: Option<&str>) -> String {
    let (language, voice) = voice_for(locale);
    let mut twiml = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#);
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        twiml.push_str(r#"<Pause length="1"/>"#);
        twiml.push_str(&format!(
            r#"<Say language="{}" voice="{}">{}</Say>"#,
            escape(language),
            escape(voice),
            escape(line)
        ));
    }
    twiml.push_str("</Response>");
    twiml
}

/// XML's five special characters as entities, in text and attribute values alike.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_is_said_after_a_pause_in_the_locales_voice() {
        let twiml = say("Your code is 1, 2, 3.\n\nAgain: 1, 2, 3.\n", Some("fr-CA"));
        assert_eq!(
            twiml,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#,
                r#"<Pause length="1"/><Say language="fr-FR" voice="Google.fr-FR-Standard-A">Your code is 1, 2, 3.</Say>"#,
                r#"<Pause length="1"/><Say language="fr-FR" voice="Google.fr-FR-Standard-A">Again: 1, 2, 3.</Say>"#,
                "</Response>"
            )
        );
    }

    #[test]
    fn text_that_looks_like_markup_is_spoken_not_obeyed() {
        let twiml = say(r#"Tom & Jerry <Hangup/> "it's""#, None);
        assert!(
            twiml.contains("Tom &amp; Jerry &lt;Hangup/&gt; &quot;it&apos;s&quot;"),
            "{twiml}"
        );
        assert!(!twiml.contains("<Hangup/>"), "{twiml}");
    }

    #[test]
    fn a_locale_without_a_voice_falls_back_to_its_language_then_english() {
        assert_eq!(voice_for(Some("pt-BR")).0, "pt-BR");
        assert_eq!(voice_for(Some("pt-AO")).0, "pt-PT");
        assert_eq!(voice_for(Some("zh_HK")).0, "yue-HK");
        assert_eq!(voice_for(Some("xx")), ("en-US", "Google.en-US-Standard-C"));
        assert_eq!(voice_for(None).0, "en-US");
    }
}
