//! `template::Templates` rendering the built-in templates with any data, and the segment
//! arithmetic (`domain::analyze`) on what they render and on any text.
//!
//! An input's first byte picks a built-in template; the rest is its data when it is a JSON
//! object, and otherwise the text given to every variable the template might name.

use std::sync::OnceLock;

use ::template::{analyze, Encoding, Templates};
use serde_json::{json, Value};

fn templates() -> &'static Templates {
    static TEMPLATES: OnceLock<Templates> = OnceLock::new();
    TEMPLATES.get_or_init(|| Templates::built_in().unwrap())
}

pub fn run(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    check_segments(&text);

    let templates = templates();
    let names: Vec<&str> = templates.names().collect();
    let name = names[usize::from(pick) % names.len()];
    let data = match serde_json::from_slice::<Value>(rest) {
        Ok(object @ Value::Object(_)) => object,
        _ => json!({ "code": text, "expiryMinutes": text, "name": text }),
    };
    if let Ok(rendered) = templates.render(name, &data) {
        check_segments(&rendered);
    }
}

/// `analyze` against a plain count of what the message costs: characters packed into segments
/// in order, a character never split across two (a GSM-7 extension character is an escape and
/// the character, a UCS-2 character outside the BMP two UTF-16 units).
fn check_segments(text: &str) {
    let info = analyze(text);
    assert_eq!(
        info.characters,
        text.chars().count(),
        "characters of {text:?}"
    );
    let gsm7: Option<Vec<usize>> = text.chars().map(gsm7_septets).collect();
    let (encoding, units, single, multi) = match gsm7 {
        Some(septets) => (Encoding::Gsm7, septets, 160, 153),
        None => (
            Encoding::Ucs2,
            text.chars().map(char::len_utf16).collect(),
            70,
            67,
        ),
    };
    assert_eq!(info.encoding, encoding, "encoding of {text:?}");
    let segments = if units.iter().sum::<usize>() <= single {
        1
    } else {
        let mut segments = 1;
        let mut used = 0;
        for unit in units {
            if used + unit > multi {
                segments += 1;
                used = 0;
            }
            used += unit;
        }
        segments
    };
    assert_eq!(info.segments, segments, "segments of {text:?}");
}

/// Septets of one character in the GSM 03.38 default alphabet, `None` outside it.
fn gsm7_septets(c: char) -> Option<usize> {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXTENDED: &str = "\u{0C}^{}\\[~]|€";
    if BASIC.contains(c) {
        Some(1)
    } else if EXTENDED.contains(c) {
        Some(2)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_run_clean() {
        crate::run_seeds("template", super::run);
    }
}
