//! How many SMS segments a text costs. Carriers bill per segment: a single GSM-7 segment holds
//! 160 characters, but one character outside GSM-7 switches the whole message to UCS-2 and 70.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Encoding {
    #[serde(rename = "GSM-7")]
    Gsm7,
    #[serde(rename = "UCS-2")]
    Ucs2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SegmentInfo {
    pub encoding: Encoding,
    /// Characters as a person counts them.
    pub characters: usize,
    pub segments: u32,
}

/// The GSM 03.38 default alphabet (one septet each).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table: each costs two septets (escape + character).
const GSM7_EXTENDED: &str = "\u{0C}^{}\\[~]|€";

/// Single-segment capacity, then per-segment capacity once a concatenation header (UDH) is
/// needed, in septets (GSM-7) or UTF-16 code units (UCS-2).
const GSM7_SINGLE: usize = 160;
const GSM7_MULTI: usize = 153;
const UCS2_SINGLE: usize = 70;
const UCS2_MULTI: usize = 67;

/// Septets of each ASCII character (0: not in GSM-7), from the two tables above: searching the
/// tables for every character of a message cost more than the rest of its accounting.
const ASCII_SEPTETS: [u8; 128] = ascii_septets();

const fn ascii_septets() -> [u8; 128] {
    let mut table = [0; 128];
    let (basic, extended) = (GSM7_BASIC.as_bytes(), GSM7_EXTENDED.as_bytes());
    // Bytes under 128 of UTF-8 text are its ASCII characters, whole.
    let mut i = 0;
    while i < basic.len() {
        if basic[i] < 128 {
            table[basic[i] as usize] = 1;
        }
        i += 1;
    }
    let mut i = 0;
    while i < extended.len() {
        if extended[i] < 128 {
            table[extended[i] as usize] = 2;
        }
        i += 1;
    }
    table
}

/// Septets `c` takes in GSM-7; `None` when only UCS-2 can carry it.
fn septets(c: char) -> Option<usize> {
    match ASCII_SEPTETS.get(c as usize) {
        Some(0) => None,
        Some(&septets) => Some(usize::from(septets)),
        None => searched(c),
    }
}

/// [`septets`] by searching the tables.
fn searched(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENDED.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// The characters that make `text` UCS-2, each once, in the order they first appear: what a
/// writer changes to bring the text back to GSM-7.
pub fn outside_gsm7(text: &str) -> Vec<char> {
    let mut found: Vec<char> = Vec::new();
    for c in text.chars() {
        if septets(c).is_none() && !found.contains(&c) {
            found.push(c);
        }
    }
    found
}

pub fn analyze(text: &str) -> SegmentInfo {
    let characters = text.chars().count();
    let septets: Option<Vec<usize>> = text.chars().map(septets).collect();
    let (encoding, units, single, multi) = match septets {
        Some(septets) => (Encoding::Gsm7, septets, GSM7_SINGLE, GSM7_MULTI),
        None => (
            Encoding::Ucs2,
            text.chars().map(char::len_utf16).collect(),
            UCS2_SINGLE,
            UCS2_MULTI,
        ),
    };
    let segments = if units.iter().sum::<usize>() <= single {
        1
    } else {
        packed(&units, multi)
    };
    SegmentInfo {
        encoding,
        characters,
        segments: u32::try_from(segments).unwrap_or(u32::MAX),
    }
}

/// Segments of `capacity` filled in order, one character's units (a GSM-7 escape and its
/// character, a UTF-16 surrogate pair) never split across two: a phone could not show half of
/// one, so a character that does not fit starts the next segment, leaving the room unused.
fn packed(units: &[usize], capacity: usize) -> usize {
    let mut segments = 1;
    let mut used = 0;
    for &unit in units {
        if used + unit > capacity {
            segments += 1;
            used = 0;
        }
        used += unit;
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_table_says_what_the_alphabet_says() {
        for c in (0..128u8).map(char::from) {
            assert_eq!(septets(c), searched(c), "{c:?}");
        }
        assert_eq!(septets('`'), None);
        assert_eq!(septets('['), Some(2));
        assert_eq!(septets('é'), Some(1));
    }

    #[test]
    fn the_characters_outside_gsm7_are_named_once_each_in_order() {
        assert_eq!(
            outside_gsm7("Grüße ✓ “ok” ✓ €5 {x} ł"),
            vec!['✓', '“', '”', 'ł']
        );
        assert!(outside_gsm7("Plain text, €5 [ok]").is_empty());
    }

    #[test]
    fn plain_text_up_to_160_characters_is_one_gsm7_segment() {
        let info = analyze(&"a".repeat(160));
        assert_eq!(info.encoding, Encoding::Gsm7);
        assert_eq!(info.segments, 1);
        assert_eq!(analyze(&"a".repeat(161)).segments, 2);
        assert_eq!(analyze(&"a".repeat(306)).segments, 2);
        assert_eq!(analyze(&"a".repeat(307)).segments, 3);
    }

    #[test]
    fn extension_characters_count_twice() {
        let info = analyze(&"€".repeat(80));
        assert_eq!(info.encoding, Encoding::Gsm7);
        assert_eq!(info.characters, 80);
        assert_eq!(info.segments, 1);
        assert_eq!(analyze(&"€".repeat(81)).segments, 2);
    }

    #[test]
    fn one_character_outside_gsm7_switches_to_ucs2() {
        let info = analyze(&format!("{}é✓", "a".repeat(68)));
        assert_eq!(info.encoding, Encoding::Ucs2);
        assert_eq!(info.segments, 1);
        assert_eq!(analyze(&format!("{}✓", "a".repeat(70))).segments, 2);
        assert_eq!(analyze(&"✓".repeat(134)).segments, 2);
        assert_eq!(analyze(&"✓".repeat(135)).segments, 3);
    }

    #[test]
    fn emoji_take_two_ucs2_units() {
        let info = analyze(&"😀".repeat(35));
        assert_eq!(info.characters, 35);
        assert_eq!(info.segments, 1);
        assert_eq!(analyze(&"😀".repeat(36)).segments, 2);
    }

    /// Found by the `template` fuzz target: 306 septets fit two segments by arithmetic, but
    /// not when an extension character (escape and character) would straddle their boundary.
    #[test]
    fn a_character_is_never_split_across_segments() {
        let straddling = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(analyze(&straddling).segments, 3);
        let aligned = format!("{}€{}", "a".repeat(151), "a".repeat(153));
        assert_eq!(analyze(&aligned).segments, 2);
        // UCS-2: an emoji is a surrogate pair, which a segment boundary does not split either.
        let emoji = format!("{}😀{}", "✓".repeat(66), "✓".repeat(66));
        assert_eq!(analyze(&emoji).segments, 3);
    }

    #[test]
    fn the_two_factor_message_is_one_segment() {
        let text = "Your Smarter Firms verification code is: 123456. This code will expire in 10 minutes. Do not share this code with anyone.";
        assert_eq!(analyze(text).segments, 1);
    }
}
