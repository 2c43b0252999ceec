//! What a voice call's text needs that an SMS's does not: the code as digits a synthetic
//! voice reads one by one, and the language tag of the text-to-speech voice for a locale.
//!
//! The voice channel builds the call's TwiML; the words it says come from the
//! `two-factor-auth-voice[.LOCALE]` templates, which receive `code_digits`, `brand` and
//! `expiryMinutes`.

/// The code as the voice templates receive it, `code_digits`: each digit on its own, with a
/// comma between, so that a text-to-speech voice reads `1, 2, 3` slowly rather than "one
/// hundred and twenty-three".
pub fn spoken_digits(code: &str) -> String {
    let digits: Vec<String> = code.chars().map(String::from).collect();
    digits.join(", ")
}

/// The BCP 47 tag of the text-to-speech voices (Google's, which Twilio's `<Say>` offers as
/// `Google.TAG-Standard-A` and the like) for a built-in locale; `None` for another.
pub fn say_language(locale: &str) -> Option<&'static str> {
    Some(match locale {
        "en" => "en-US",
        "fr" => "fr-FR",
        "de" => "de-DE",
        "it" => "it-IT",
        "es" => "es-ES",
        "pt" => "pt-PT",
        "pt-BR" => "pt-BR",
        "nl" => "nl-NL",
        "pl" => "pl-PL",
        "ru" => "ru-RU",
        "uk" => "uk-UA",
        "tr" => "tr-TR",
        "ar" => "ar-XA",
        "he" => "he-IL",
        "hi" => "hi-IN",
        "bn" => "bn-IN",
        "ja" => "ja-JP",
        "ko" => "ko-KR",
        "zh-CN" => "cmn-CN",
        "zh-HK" => "yue-HK",
        "id" => "id-ID",
        "ms" => "ms-MY",
        "th" => "th-TH",
        "vi" => "vi-VN",
        "sv" => "sv-SE",
        "da" => "da-DK",
        "nb" => "nb-NO",
        "fi" => "fi-FI",
        "cs" => "cs-CZ",
        "ro" => "ro-RO",
        "hu" => "hu-HU",
        "el" => "el-GR",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_read_digit_by_digit() {
        assert_eq!(spoken_digits("123456"), "1, 2, 3, 4, 5, 6");
        assert_eq!(spoken_digits("7"), "7");
        assert_eq!(spoken_digits(""), "");
    }

    #[test]
    fn every_built_in_locale_has_a_voice_language() {
        for locale in crate::BUILT_IN_LOCALES {
            assert!(say_language(locale).is_some(), "{locale}");
        }
        assert_eq!(say_language("xx"), None);
    }
}
