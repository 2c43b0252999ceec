//! What a voice call's text needs that an SMS's does not: the code as digits a synthetic
//! voice reads one by one. (The voice for a locale is the Twilio adapter's: `twiml::voice_for`.)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_read_digit_by_digit() {
        assert_eq!(spoken_digits("123456"), "1, 2, 3, 4, 5, 6");
        assert_eq!(spoken_digits("7"), "7");
        assert_eq!(spoken_digits(""), "");
    }
}
