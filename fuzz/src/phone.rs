//! `domain::PhoneNumber` from any text: what clients send as `to`, and what Twilio sends back.

use domain::PhoneNumber;

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = domain::phone::mask(&text);
    if let Ok(stored) = PhoneNumber::from_stored(&text) {
        let _ = stored.country();
    }
    let Ok(number) = PhoneNumber::parse(&text) else {
        return;
    };
    let e164 = number.as_str();
    let digits = &e164[1..];
    assert!(
        e164.starts_with('+')
            && (1..=15).contains(&digits.len())
            && digits.bytes().all(|byte| byte.is_ascii_digit()),
        "{text:?} parsed to {e164:?}, which is not E.164"
    );
    // What is stored is parsed again by the next client call with the same number, and read
    // back without parsing by the dispatcher: all three must be the same number.
    let again = PhoneNumber::parse(e164).unwrap_or_else(|error| {
        panic!("{text:?} parsed to {e164:?}, which does not parse: {error}")
    });
    assert_eq!(
        again.as_str(),
        e164,
        "{text:?} parses differently the second time"
    );
    let stored = PhoneNumber::from_stored(e164)
        .unwrap_or_else(|error| panic!("{e164:?} cannot be read back: {error}"));
    assert_eq!(
        stored.calling_code(),
        number.calling_code(),
        "calling code of {e164:?}"
    );
    assert_eq!(stored.country(), number.country(), "country of {e164:?}");
    // A masked number is what logs show: it must hide at least one digit.
    let masked = number.masked();
    let shown = masked.bytes().filter(u8::is_ascii_digit).count();
    assert!(
        shown < digits.len(),
        "{masked} shows every digit of the number"
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_run_clean() {
        crate::run_seeds("phone", super::run);
    }
}
