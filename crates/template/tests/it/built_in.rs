//! Every built-in two-factor text, in every language: that it renders, names the brand, the
//! code and its validity, and costs what the issue promises (one SMS segment with a 10-digit
//! code and the default brand; with the autofill line, one GSM-7 or two UCS-2 segments).

use domain::{analyze, with_autofill, AppDomain, Encoding};
use serde_json::json;
use template::{
    spoken_digits, Templates, BUILT_IN_LOCALES, TWO_FACTOR_AUTH, TWO_FACTOR_AUTH_VOICE,
};

const TEN_DIGITS: &str = "8406271359";

fn sms(templates: &Templates, locale: &str, minutes: u64) -> String {
    templates
        .render(
            &format!("{TWO_FACTOR_AUTH}.{locale}"),
            &json!({"code": TEN_DIGITS, "expiryMinutes": minutes}),
        )
        .unwrap_or_else(|error| panic!("{locale}: {error}"))
}

#[test]
fn there_are_texts_for_at_least_32_languages() {
    assert!(BUILT_IN_LOCALES.len() >= 32, "{BUILT_IN_LOCALES:?}");
    let templates = Templates::built_in().unwrap();
    for locale in BUILT_IN_LOCALES {
        for name in [TWO_FACTOR_AUTH, TWO_FACTOR_AUTH_VOICE] {
            assert_eq!(
                templates.resolve(name, Some(locale)),
                Some(format!("{name}.{locale}")),
                "{name} has no text of its own for {locale}"
            );
            assert!(templates.is_sensitive(&format!("{name}.{locale}")));
        }
    }
}

#[test]
fn every_sms_text_names_the_brand_the_code_and_the_minutes() {
    let templates = Templates::built_in().unwrap();
    for locale in BUILT_IN_LOCALES {
        let text = sms(&templates, locale, 10);
        for part in ["Smarter Firms", TEN_DIGITS, "10"] {
            assert!(text.contains(part), "{locale} lacks {part}: {text}");
        }
        assert!(!text.contains('\n'), "{locale}: one line, {text:?}");
        assert_eq!(text.trim(), text, "{locale}: no blank around, {text:?}");
    }
}

#[test]
fn every_sms_text_with_a_ten_digit_code_fits_one_segment() {
    let templates = Templates::built_in().unwrap();
    for locale in BUILT_IN_LOCALES {
        let text = sms(&templates, locale, 10);
        let info = analyze(&text);
        assert_eq!(
            info.segments, 1,
            "{locale} is {} {:?} characters: {text}",
            info.characters, info.encoding
        );
    }
}

#[test]
fn with_the_autofill_line_gsm7_texts_fit_one_segment_and_ucs2_texts_two() {
    let templates = Templates::built_in().unwrap();
    let domain = AppDomain::parse("verify.smarterfir.ms").unwrap();
    assert_eq!(domain.as_str().len(), 20);
    let mut encodings = Vec::new();
    for locale in BUILT_IN_LOCALES {
        let text = with_autofill(
            &sms(&templates, locale, 10),
            TEN_DIGITS,
            None,
            Some(&domain),
        );
        assert!(
            text.ends_with("\n@verify.smarterfir.ms #8406271359"),
            "{text}"
        );
        let info = analyze(&text);
        let allowed = match info.encoding {
            Encoding::Gsm7 => 1,
            Encoding::Ucs2 => 2,
        };
        assert!(
            info.segments <= allowed,
            "{locale} with autofill is {} segments ({:?}): {text}",
            info.segments,
            info.encoding
        );
        encodings.push(info.encoding);
    }
    // Both kinds are covered, so neither bound is vacuous.
    assert!(encodings.contains(&Encoding::Gsm7) && encodings.contains(&Encoding::Ucs2));
}

#[test]
fn every_voice_text_says_the_code_twice_and_names_the_brand_and_the_minutes() {
    let templates = Templates::built_in().unwrap();
    let digits = spoken_digits(TEN_DIGITS);
    for locale in BUILT_IN_LOCALES {
        let name = format!("{TWO_FACTOR_AUTH_VOICE}.{locale}");
        let text = templates
            .render(&name, &json!({"code_digits": digits, "expiryMinutes": 10}))
            .unwrap_or_else(|error| panic!("{locale}: {error}"));
        assert_eq!(text.matches(&digits).count(), 2, "{locale}: {text}");
        assert!(text.contains("Smarter Firms"), "{locale}: {text}");
        assert!(text.contains("10"), "{locale}: {text}");
        assert!(
            !text.contains(TEN_DIGITS),
            "{locale}: only the spoken digits"
        );
    }
}

#[test]
fn every_country_language_has_its_texts() {
    for locale in domain::language::country_locales() {
        assert!(BUILT_IN_LOCALES.contains(&locale), "{locale}");
    }
}

#[test]
fn the_base_templates_are_the_english_texts() {
    let templates = Templates::built_in().unwrap();
    let data = json!({"code": "123456", "code_digits": "1, 2", "expiryMinutes": 10});
    for name in [TWO_FACTOR_AUTH, TWO_FACTOR_AUTH_VOICE] {
        assert_eq!(
            templates.render(name, &data).unwrap(),
            templates.render(&format!("{name}.en"), &data).unwrap()
        );
    }
}
