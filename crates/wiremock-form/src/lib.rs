//! A wiremock matcher for `application/x-www-form-urlencoded` request bodies, the way Twilio and
//! Vonage are spoken to, shared by the tests of every crate that fakes them: one meaning of "the
//! form holds exactly these fields", so that a missing, extra or repeated field fails a mock the
//! same way in every crate.
//!
//! Test support only: crates take it as a dev-dependency, never a normal one (the tidy test
//! `crates_depend_only_on_what_the_dependency_rule_allows` fails otherwise), and it depends on
//! no workspace crate.

use std::collections::HashMap;

use wiremock::{Match, Request};

/// The fields of a form body by name; a repeated name keeps its last value.
pub fn fields(request: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect()
}

/// What a field's value must be.
enum Value {
    Is(String),
    Any,
    Satisfies(Box<dyn Fn(&str) -> bool + Send + Sync>),
}

impl Value {
    fn accepts(&self, received: &str) -> bool {
        match self {
            Value::Is(expected) => expected == received,
            Value::Any => true,
            Value::Satisfies(check) => check(received),
        }
    }
}

/// Matches a form body holding exactly the fields named, each once, with the values asked
/// for: a missing, extra or repeated field, or a wrong value, fails the match.
#[derive(Default)]
pub struct Form {
    fields: Vec<(String, Value)>,
}

impl Form {
    /// A form that must be empty, until fields are added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Exactly these fields with these values.
    pub fn exactly(pairs: &[(&str, &str)]) -> Self {
        pairs
            .iter()
            .fold(Self::new(), |form, (name, value)| form.field(name, value))
    }

    /// The field `name` with the value `value`.
    pub fn field(self, name: &str, value: &str) -> Self {
        self.with(name, Value::Is(value.to_owned()))
    }

    /// The field `name` with any value (one that varies from message to message).
    pub fn any(self, name: &str) -> Self {
        self.with(name, Value::Any)
    }

    /// The field `name` with a value that `check` accepts.
    pub fn field_where(
        self,
        name: &str,
        check: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.with(name, Value::Satisfies(Box::new(check)))
    }

    /// Adds `name`, replacing what was asked of it before: a name is expected once.
    fn with(mut self, name: &str, value: Value) -> Self {
        self.fields.retain(|(existing, _)| existing != name);
        self.fields.push((name.to_owned(), value));
        self
    }

    /// Whether the form-encoded `body` is the form described.
    pub fn matches_body(&self, body: &[u8]) -> bool {
        let received: Vec<(String, String)> =
            url::form_urlencoded::parse(body).into_owned().collect();
        received.len() == self.fields.len()
            && self.fields.iter().all(|(name, value)| {
                let mut named = received.iter().filter(|(received, _)| received == name);
                match (named.next(), named.next()) {
                    (Some((_, received)), None) => value.accepts(received),
                    _ => false,
                }
            })
    }
}

impl Match for Form {
    fn matches(&self, request: &Request) -> bool {
        self.matches_body(&request.body)
    }
}

#[cfg(test)]
mod tests {
    use super::Form;

    fn twilio_send() -> Form {
        Form::exactly(&[("To", "+15551234567"), ("From", "+15005550006")]).any("Body")
    }

    #[test]
    fn the_form_asked_for_matches_in_any_order_with_values_encoded() {
        assert!(
            twilio_send().matches_body(b"Body=hi+there%21&From=%2B15005550006&To=%2B15551234567")
        );
    }

    #[test]
    fn a_missing_extra_or_repeated_field_fails() {
        assert!(!twilio_send().matches_body(b"To=%2B15551234567&From=%2B15005550006"));
        assert!(!twilio_send()
            .matches_body(b"To=%2B15551234567&From=%2B15005550006&Body=hi&StatusCallback=x"));
        assert!(!twilio_send()
            .matches_body(b"To=%2B15551234567&To=%2B15551234567&From=%2B15005550006&Body=hi"));
        assert!(!twilio_send().matches_body(b""));
    }

    #[test]
    fn a_wrong_value_fails_and_a_check_decides_its_field() {
        assert!(!twilio_send().matches_body(b"To=%2B15550000000&From=%2B15005550006&Body=hi"));
        let code = Form::new().field_where("ValidityPeriod", |seconds| {
            seconds.parse::<u32>().is_ok_and(|seconds| seconds <= 600)
        });
        assert!(code.matches_body(b"ValidityPeriod=600"));
        assert!(!code.matches_body(b"ValidityPeriod=601"));
        assert!(!code.matches_body(b"ValidityPeriod=soon"));
    }

    #[test]
    fn a_field_asked_for_twice_is_expected_once_with_the_last_value() {
        let form = Form::new().field("To", "a").field("To", "b");
        assert!(form.matches_body(b"To=b"));
        assert!(!form.matches_body(b"To=a&To=b"));
    }

    #[test]
    fn an_empty_form_matches_only_an_empty_body() {
        assert!(Form::new().matches_body(b""));
        assert!(!Form::new().matches_body(b"To=a"));
    }
}
