//! One-time codes: drawn from the OS CSPRNG, kept only as keyed hashes.

use chrono::{DateTime, Utc};
use domain::{CodeHash, CodeLength, PhoneNumber, Transaction, VerificationCode, VerificationId};
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::{Rng, TryRngCore};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Codes from the operating system's CSPRNG, uniform over every digit string of the length:
/// `random_range` rejects out-of-range draws instead of taking a modulo, so no code is likelier.
pub struct OsCodeGenerator;

impl ports::CodeGenerator for OsCodeGenerator {
    fn generate(&self, length: CodeLength) -> VerificationCode {
        let digits = u32::from(length.digits());
        let upper = 10u64.pow(digits);
        let value = OsRng.unwrap_err().random_range(0..upper);
        let text = format!("{value:0width$}", width = digits as usize);
        // The text is `digits` ASCII digits by construction, which `parse` accepts.
        VerificationCode::parse(&text).unwrap_or_else(|_| unreachable!("{digits} digits"))
    }
}

/// A random token of `bytes` bytes from the OS CSPRNG, hex-encoded (API keys, peppers).
pub fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    OsRng.unwrap_err().fill(buffer.as_mut_slice());
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The secret kept in `file`, created there (readable by its owner only) with a random one on
/// first use: the embedded database's code pepper, so that a restart does not invalidate the
/// codes already sent and the service and the CLI on one database agree, and the default
/// run's API key, so that a client's key still works after a restart.
pub fn secret_kept_in(file: &std::path::Path) -> std::io::Result<SecretString> {
    use std::io::Write;
    match std::fs::read_to_string(file) {
        Ok(pepper) if !pepper.trim().is_empty() => return Ok(SecretString::from(pepper.trim())),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    if let Some(directory) = file.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(directory)?;
    }
    let pepper = random_token(32);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(file) {
        Ok(mut created) => {
            created.write_all(pepper.as_bytes())?;
            Ok(SecretString::from(pepper))
        }
        // Another process created it first: theirs is the one.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let pepper = std::fs::read_to_string(file)?;
            if pepper.trim().is_empty() {
                return Err(std::io::Error::other(format!(
                    "{} is empty: delete it and start again",
                    file.display()
                )));
            }
            Ok(SecretString::from(pepper.trim()))
        }
        Err(error) => Err(error),
    }
}

/// HMAC-SHA256 of a code under the server's pepper. The verification id is part of the
/// input, so the same code in two verifications hashes differently and a hash is useless
/// outside its verification; so is the transaction a code confirms (PSD2 dynamic linking), so
/// that only a check naming the same amount, currency and payee finds it.
#[derive(Clone)]
pub struct CodeHasher {
    pepper: SecretString,
}

impl CodeHasher {
    pub fn new(pepper: SecretString) -> Self {
        Self { pepper }
    }

    /// The hash of `code` in `verification`, bound to `transaction` when the code confirms
    /// one. Without one the input is what it always was (id, code), so the hashes of codes
    /// sent before transactions existed still match; with one, a NUL (which no code contains)
    /// and the transaction's binding follow, so no code and transaction give another's bytes.
    pub fn hash(
        &self,
        verification: VerificationId,
        code: &VerificationCode,
        transaction: Option<&Transaction>,
    ) -> CodeHash {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.pepper.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(verification.as_uuid().as_bytes());
        mac.update(code.expose().as_bytes());
        if let Some(transaction) = transaction {
            mac.update(b"\0transaction\0");
            mac.update(transaction.binding().as_bytes());
        }
        CodeHash::from_bytes(mac.finalize().into_bytes().to_vec())
    }

    /// A tag naming `number` in a log without the number: 16 hex digits of its HMAC under the
    /// pepper (a plain hash of a phone number is reversed by trying every number). The same
    /// number gets the same tag, so an operator holding the number can find its erasure.
    pub fn number_tag(&self, number: &PhoneNumber) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.pepper.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"number:");
        mac.update(number.as_str().as_bytes());
        mac.finalize().into_bytes()[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// A key for `purpose` derived from the pepper: the same on every instance sharing it,
    /// and unrelated to any code's hash or number's tag (those never hash a purpose).
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.pepper.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"derived key:");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether `code`, presented with `transaction`, is any of `hashes`. Every hash is
    /// compared in constant time and none is skipped, so timing tells nothing about which code
    /// or how much of it matched.
    pub fn matches_any(
        &self,
        verification: VerificationId,
        code: &VerificationCode,
        transaction: Option<&Transaction>,
        hashes: &[CodeHash],
    ) -> bool {
        let candidate = self.hash(verification, code, transaction);
        hashes.iter().fold(false, |found, hash| {
            found | bool::from(candidate.as_bytes().ct_eq(hash.as_bytes()))
        })
    }
}

/// The wall clock.
pub struct SystemClock;

impl ports::Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[cfg(test)]
mod tests {
    use ports::CodeGenerator;

    use super::*;

    #[test]
    fn codes_have_the_requested_number_of_digits() {
        for digits in 4..=10 {
            let code = OsCodeGenerator.generate(CodeLength::new(digits).unwrap());
            assert_eq!(code.expose().len(), digits as usize);
            assert!(code.expose().bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn every_digit_is_equally_likely_in_every_position() {
        // Chi-square over 100,000 six-digit codes: a count per position and digit, 10,000
        // expected in each of the 60 cells, 54 degrees of freedom. A uniform generator exceeds
        // 130 with probability 3e-8, so this test does not fail by chance; a biased one, such
        // as a byte taken modulo 10 per digit (digits 0-5 likelier by 1.6 %), scores about 150,
        // and one that never starts with 0 scores over 10,000.
        const CODES: usize = 100_000;
        const DIGITS: usize = 6;
        let mut counts = [[0u32; 10]; DIGITS];
        for _ in 0..CODES {
            let code = OsCodeGenerator.generate(CodeLength::new(DIGITS as i64).unwrap());
            for (position, digit) in code.expose().bytes().enumerate() {
                counts[position][usize::from(digit - b'0')] += 1;
            }
        }
        let expected = CODES as f64 / 10.0;
        let chi_square: f64 = counts
            .iter()
            .flatten()
            .map(|&observed| (f64::from(observed) - expected).powi(2) / expected)
            .sum();
        assert!(
            chi_square < 130.0,
            "chi-square {chi_square:.1} over 54 degrees of freedom: {counts:?}"
        );
    }

    #[test]
    fn a_code_matches_its_own_hash_only_in_its_own_verification() {
        let hasher = CodeHasher::new(SecretString::from("p".repeat(32)));
        let code = VerificationCode::parse("123456").unwrap();
        let wrong = VerificationCode::parse("123457").unwrap();
        let id = VerificationId::generate();
        let hashes = vec![
            hasher.hash(id, &VerificationCode::parse("000000").unwrap(), None),
            hasher.hash(id, &code, None),
        ];
        assert!(hasher.matches_any(id, &code, None, &hashes));
        assert!(!hasher.matches_any(id, &wrong, None, &hashes));
        assert!(!hasher.matches_any(VerificationId::generate(), &code, None, &hashes));
    }

    #[test]
    fn a_code_bound_to_a_transaction_matches_only_that_transaction_as_numbers_compare() {
        let hasher = CodeHasher::new(SecretString::from("p".repeat(32)));
        let code = VerificationCode::parse("123456").unwrap();
        let id = VerificationId::generate();
        let transaction = |amount: &str, currency: &str, payee: &str| {
            Transaction::parse(Some(amount), Some(currency), Some(payee))
                .unwrap()
                .unwrap()
        };
        let bound = vec![hasher.hash(id, &code, Some(&transaction("10.0", "EUR", "Acme")))];
        assert!(hasher.matches_any(
            id,
            &code,
            Some(&transaction("10.00", "EUR", "Acme")),
            &bound
        ));
        assert!(hasher.matches_any(id, &code, Some(&transaction("10", "EUR", "Acme")), &bound));
        for other in [
            transaction("10.01", "EUR", "Acme"),
            transaction("10", "USD", "Acme"),
            transaction("10", "EUR", "Acme Ltd"),
        ] {
            assert!(
                !hasher.matches_any(id, &code, Some(&other), &bound),
                "{other:?}"
            );
        }
        assert!(
            !hasher.matches_any(id, &code, None, &bound),
            "a check without the transaction fails"
        );
        let unbound = vec![hasher.hash(id, &code, None)];
        assert!(
            !hasher.matches_any(id, &code, Some(&transaction("10", "EUR", "Acme")), &unbound),
            "a transaction the code was not sent for fails"
        );
    }

    #[test]
    fn a_kept_pepper_is_created_once_then_read_back() {
        let dir = std::env::temp_dir().join(format!("sms-notify-pepper-{}", random_token(8)));
        let file = dir.join("code-pepper");
        let first = secret_kept_in(&file).unwrap();
        let second = secret_kept_in(&file).unwrap();
        assert_eq!(first.expose_secret(), second.expose_secret());
        assert!(first.expose_secret().len() >= 32);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_pepper_changes_the_hash() {
        let id = VerificationId::generate();
        let code = VerificationCode::parse("123456").unwrap();
        let one = CodeHasher::new(SecretString::from("a".repeat(32))).hash(id, &code, None);
        let two = CodeHasher::new(SecretString::from("b".repeat(32))).hash(id, &code, None);
        assert_ne!(one, two);
    }
}
