//! Every built-in text of a code confirming a payment (PSD2), in every language: that it names
//! the brand, the amount, the currency, the payee, the code and its validity, and that an SMS
//! fits two segments with a 10-digit code, the default brand, the longest payee a request may
//! carry (in any script) and the longest amount.

use domain::transaction::{MAX_AMOUNT_DECIMALS, MAX_AMOUNT_WHOLE_DIGITS, MAX_PAYEE_CHARS};
use domain::{analyze, Encoding, Payee, TransactionAmount};
use serde_json::json;
use template::{
    spoken_digits, Templates, BUILT_IN_LOCALES, TWO_FACTOR_AUTH_TRANSACTION,
    TWO_FACTOR_AUTH_TRANSACTION_VOICE,
};

const TEN_DIGITS: &str = "8406271359";

/// The longest amount a request may carry: `999999999.9999`.
fn longest_amount() -> String {
    let amount = format!(
        "{}.{}",
        "9".repeat(MAX_AMOUNT_WHOLE_DIGITS),
        "9".repeat(MAX_AMOUNT_DECIMALS)
    );
    TransactionAmount::parse(&amount)
        .unwrap_or_else(|error| panic!("{amount}: {error}"))
        .as_str()
        .to_owned()
}

/// Payees of the longest length: GSM-7 letters, GSM-7 characters that take two septets each,
/// and Cyrillic, which makes any text UCS-2.
fn longest_payees() -> Vec<String> {
    ["W", "€", "Ж"]
        .iter()
        .map(|c| c.repeat(MAX_PAYEE_CHARS))
        .inspect(|payee| assert!(Payee::parse(payee).is_ok(), "{payee} is refused"))
        .collect()
}

fn sms(templates: &Templates, locale: &str, amount: &str, payee: &str) -> String {
    templates
        .render(
            &format!("{TWO_FACTOR_AUTH_TRANSACTION}.{locale}"),
            &json!({
                "code": TEN_DIGITS,
                "expiryMinutes": 10,
                "amount": amount,
                "currency": "EUR",
                "payee": payee,
            }),
        )
        .unwrap_or_else(|error| panic!("{locale}: {error}"))
}

#[test]
fn every_language_has_transaction_texts_that_are_sensitive() {
    let templates = Templates::built_in().unwrap();
    for locale in BUILT_IN_LOCALES {
        for name in [
            TWO_FACTOR_AUTH_TRANSACTION,
            TWO_FACTOR_AUTH_TRANSACTION_VOICE,
        ] {
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
fn every_transaction_sms_names_the_brand_the_payment_the_code_and_the_minutes() {
    let templates = Templates::built_in().unwrap();
    for locale in BUILT_IN_LOCALES {
        let text = sms(&templates, locale, "49.90", "Acme Travel");
        for part in [
            "Smarter Firms",
            "49.90",
            "EUR",
            "Acme Travel",
            TEN_DIGITS,
            "10",
        ] {
            assert!(text.contains(part), "{locale} lacks {part}: {text}");
        }
        assert!(!text.contains('\n'), "{locale}: one line, {text:?}");
    }
}

#[test]
fn every_transaction_sms_with_the_longest_payee_and_amount_fits_two_segments() {
    let templates = Templates::built_in().unwrap();
    let amount = longest_amount();
    assert_eq!(amount, "999999999.9999");
    let mut encodings = Vec::new();
    for locale in BUILT_IN_LOCALES {
        for payee in longest_payees() {
            let text = sms(&templates, locale, &amount, &payee);
            let info = analyze(&text);
            assert!(
                info.segments <= 2,
                "{locale} with {payee} is {} segments ({} {:?} characters): {text}",
                info.segments,
                info.characters,
                info.encoding
            );
            encodings.push(info.encoding);
        }
    }
    // Both kinds are covered, so neither bound is vacuous.
    assert!(encodings.contains(&Encoding::Gsm7) && encodings.contains(&Encoding::Ucs2));
}

#[test]
fn every_transaction_voice_text_says_the_payment_and_the_code_twice() {
    let templates = Templates::built_in().unwrap();
    let digits = spoken_digits(TEN_DIGITS);
    for locale in BUILT_IN_LOCALES {
        let name = format!("{TWO_FACTOR_AUTH_TRANSACTION_VOICE}.{locale}");
        let text = templates
            .render(
                &name,
                &json!({
                    "code_digits": digits,
                    "expiryMinutes": 10,
                    "amount": "49.90",
                    "currency": "EUR",
                    "payee": "Acme Travel",
                }),
            )
            .unwrap_or_else(|error| panic!("{locale}: {error}"));
        assert_eq!(text.matches(&digits).count(), 2, "{locale}: {text}");
        for part in ["Smarter Firms", "49.90", "EUR", "Acme Travel", "10"] {
            assert!(text.contains(part), "{locale} lacks {part}: {text}");
        }
        assert!(
            !text.contains(TEN_DIGITS),
            "{locale}: only the spoken digits"
        );
    }
}

#[test]
fn the_base_transaction_templates_are_the_english_texts() {
    let templates = Templates::built_in().unwrap();
    let data = json!({
        "code": "123456", "code_digits": "1, 2", "expiryMinutes": 10,
        "amount": "10.00", "currency": "GBP", "payee": "Acme",
    });
    for name in [
        TWO_FACTOR_AUTH_TRANSACTION,
        TWO_FACTOR_AUTH_TRANSACTION_VOICE,
    ] {
        assert_eq!(
            templates.render(name, &data).unwrap(),
            templates.render(&format!("{name}.en"), &data).unwrap()
        );
    }
    assert_eq!(
        templates
            .render(TWO_FACTOR_AUTH_TRANSACTION, &data)
            .unwrap(),
        "Your Smarter Firms code to pay 10.00 GBP to Acme is: 123456. Valid 10 minutes. Do not \
         share it."
    );
}
