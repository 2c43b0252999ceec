//! SMS text: Handlebars templates from `templates/*.hbs`, rendered strictly and without HTML
//! escaping.
//!
//! Must not depend on any adapter, database, HTTP client or framework: rendering is pure once
//! the templates are loaded.

mod catalogue;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use handlebars::{Handlebars, RenderErrorReason};

pub use catalogue::TemplateInfo;
// Segment arithmetic lives in the domain (providers need it too); re-exported for callers that
// think of it as part of rendering.
pub use domain::{analyze, outside_gsm7, Encoding, SegmentInfo};

/// The template every one-time code is sent with.
pub const TWO_FACTOR_AUTH: &str = "two-factor-auth";

/// What a call that speaks a one-time code says, one line after another with a pause between:
/// variables `code_digits` ([`code_digits`]), `brand` and `expiryMinutes`.
pub const TWO_FACTOR_AUTH_VOICE: &str = "two-factor-auth-voice";

/// The first line that makes a template sensitive: its messages carry a secret (a code), so
/// their body is never logged and is emptied once they leave the queue for good.
const SENSITIVE_MARK: &str = "{{!-- sensitive --}}";

/// Templates that ship inside the binary, so the service runs from any directory. Files in
/// the configured directory override them by name.
const BUILT_IN: &[(&str, &str)] = &[
    (
        TWO_FACTOR_AUTH,
        include_str!("../../../templates/two-factor-auth.hbs"),
    ),
    (
        TWO_FACTOR_AUTH_VOICE,
        include_str!("../../../templates/two-factor-auth-voice.hbs"),
    ),
];

/// A code as a voice reads it slowly, digit by digit: `1, 2, 3, 4, 5, 6`. The commas make a
/// text-to-speech voice pause after each digit instead of reading "one hundred twenty-three
/// thousand...".
pub fn code_digits(code: &str) -> String {
    code.chars()
        .filter(char::is_ascii_digit)
        .map(String::from)
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read templates from {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("template `{name}` does not compile: {reason}")]
    Syntax { name: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("unknown template `{0}`")]
    UnknownTemplate(String),
    #[error("template `{template}` needs the variable `{variable}`")]
    MissingVariable { template: String, variable: String },
    #[error("template `{template}` could not be rendered: {reason}")]
    Failed { template: String, reason: String },
}

/// The loaded templates, ready to render. Cheap to share behind an `Arc`.
pub struct Templates {
    registry: Handlebars<'static>,
    sources: BTreeMap<String, String>,
    /// Names (without locale) of the templates one of whose files carries [`SENSITIVE_MARK`].
    sensitive: BTreeSet<String>,
}

impl Templates {
    /// Only the templates compiled into the binary.
    pub fn built_in() -> Result<Self, LoadError> {
        let mut templates = Self::empty();
        for (name, source) in BUILT_IN {
            templates.add(name, source)?;
        }
        Ok(templates)
    }

    /// The built-in templates, overridden and extended by every `NAME.hbs` in `dir`. A
    /// localised variant is `NAME.LOCALE.hbs` (`two-factor-auth.fr.hbs`), registered as
    /// `NAME.LOCALE`.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let mut templates = Self::built_in()?;
        let read_error = |source| LoadError::Read {
            path: dir.to_owned(),
            source,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read_error)?
            .map(|entry| entry.map(|entry| entry.path()))
            .collect::<Result<_, _>>()
            .map_err(read_error)?;
        paths.sort();
        for path in paths {
            if path.extension().and_then(|e| e.to_str()) != Some("hbs") {
                continue;
            }
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let source = std::fs::read_to_string(&path).map_err(|source| LoadError::Read {
                path: path.clone(),
                source,
            })?;
            templates.add(name, &source)?;
        }
        Ok(templates)
    }

    fn empty() -> Self {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        // SMS is plain text: `&`, `<` and `'` must arrive as typed, not as HTML entities.
        registry.register_escape_fn(handlebars::no_escape);
        Self {
            registry,
            sources: BTreeMap::new(),
            sensitive: BTreeSet::new(),
        }
    }

    fn add(&mut self, name: &str, source: &str) -> Result<(), LoadError> {
        // Editors end files with a newline; an SMS must not (it would cost a character).
        let source = source.trim_end_matches(['\n', '\r']);
        // The mark is a directive, not text: its line would start the SMS with a newline.
        let (first_line, rest) = source.split_once('\n').unwrap_or((source, ""));
        let source = if first_line.trim() == SENSITIVE_MARK {
            self.sensitive.insert(template_of(name).to_owned());
            rest
        } else {
            source
        };
        self.registry
            .register_template_string(name, source)
            .map_err(|error| LoadError::Syntax {
                name: name.to_owned(),
                reason: error.to_string(),
            })?;
        self.sources.insert(name.to_owned(), source.to_owned());
        Ok(())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.sources.contains_key(name)
    }

    /// Whether messages from `name` (a template, or one of its localised variants) carry a
    /// secret. A mark on any file of the template counts, so that neither a locale's variant
    /// nor an override of a built-in can drop it by leaving it out.
    pub fn is_sensitive(&self, name: &str) -> bool {
        self.sensitive.contains(template_of(name))
    }

    /// Template names in order, localised variants included.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    /// The most specific template for `locale`: `NAME.LOCALE`, then `NAME.LANGUAGE` (for
    /// `pt-BR`, `pt`), then `NAME`.
    pub fn resolve(&self, name: &str, locale: Option<&str>) -> Option<String> {
        if let Some(locale) = locale {
            let language = locale.split(['-', '_']).next().unwrap_or(locale);
            for candidate in [format!("{name}.{locale}"), format!("{name}.{language}")] {
                if self.contains(&candidate) {
                    return Some(candidate);
                }
            }
        }
        self.contains(name).then(|| name.to_owned())
    }

    pub fn render(&self, name: &str, data: &serde_json::Value) -> Result<String, RenderError> {
        if !self.contains(name) {
            return Err(RenderError::UnknownTemplate(name.to_owned()));
        }
        self.registry
            .render(name, data)
            .map_err(|error| match error.reason() {
                RenderErrorReason::MissingVariable(variable) => RenderError::MissingVariable {
                    template: name.to_owned(),
                    variable: variable.clone().unwrap_or_default(),
                },
                reason => RenderError::Failed {
                    template: name.to_owned(),
                    reason: reason.to_string(),
                },
            })
    }
}

/// The template a registered name belongs to: `two-factor-auth` for `two-factor-auth.fr`.
fn template_of(name: &str) -> &str {
    name.split_once('.').map_or(name, |(template, _)| template)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn two_factor_auth_renders_the_agreed_text() {
        let templates = Templates::built_in().unwrap();
        let text = templates
            .render(
                TWO_FACTOR_AUTH,
                &json!({"code": "123456", "expiryMinutes": 10}),
            )
            .unwrap();
        assert_eq!(
            text,
            "Your Smarter Firms verification code is: 123456. This code will expire in 10 minutes. Do not share this code with anyone."
        );
    }

    #[test]
    fn the_voice_text_says_the_code_digit_by_digit_twice() {
        let templates = Templates::built_in().unwrap();
        let text = templates
            .render(
                TWO_FACTOR_AUTH_VOICE,
                &json!({"code_digits": code_digits("042917"), "brand": "Smarter Firms", "expiryMinutes": 10}),
            )
            .unwrap();
        assert_eq!(text.matches("0, 4, 2, 9, 1, 7").count(), 2, "{text}");
        assert!(text.contains("Smarter Firms"), "{text}");
        assert!(text.contains("10 minutes"), "{text}");
        assert!(templates.is_sensitive(TWO_FACTOR_AUTH_VOICE));
    }

    #[test]
    fn code_digits_separates_every_digit() {
        assert_eq!(code_digits("123456"), "1, 2, 3, 4, 5, 6");
        assert_eq!(code_digits("7"), "7");
    }

    #[test]
    fn a_missing_variable_is_an_error_naming_it() {
        let templates = Templates::built_in().unwrap();
        let error = templates
            .render(TWO_FACTOR_AUTH, &json!({"code": "123456"}))
            .unwrap_err();
        assert_eq!(
            error,
            RenderError::MissingVariable {
                template: TWO_FACTOR_AUTH.into(),
                variable: "expiryMinutes".into()
            }
        );
    }

    #[test]
    fn an_unknown_template_is_an_error_naming_it() {
        let templates = Templates::built_in().unwrap();
        assert_eq!(
            templates.render("welcome", &json!({})),
            Err(RenderError::UnknownTemplate("welcome".into()))
        );
    }

    #[test]
    fn text_is_not_html_escaped() {
        let mut templates = Templates::empty();
        templates.add("note", "{{text}}\n").unwrap();
        let text = templates
            .render(
                "note",
                &json!({"text": "Tom & Jerry <3 O'Brien \"quoted\""}),
            )
            .unwrap();
        assert_eq!(text, "Tom & Jerry <3 O'Brien \"quoted\"");
    }

    #[test]
    fn a_directory_adds_templates_and_locales_and_overrides_built_ins() {
        let dir = std::env::temp_dir().join(format!("sms-notify-templates-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("welcome.hbs"), "Hi {{name}}\n").unwrap();
        std::fs::write(dir.join("two-factor-auth.fr.hbs"), "Votre code : {{code}}").unwrap();
        std::fs::write(dir.join("README.txt"), "not a template").unwrap();
        let templates = Templates::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        assert_eq!(
            templates.names().collect::<Vec<_>>(),
            [
                "two-factor-auth",
                "two-factor-auth-voice",
                "two-factor-auth.fr",
                "welcome"
            ]
        );
        assert_eq!(
            templates
                .render("welcome", &json!({"name": "Ada"}))
                .unwrap(),
            "Hi Ada"
        );
        assert_eq!(
            templates.resolve(TWO_FACTOR_AUTH, Some("fr-CA")).as_deref(),
            Some("two-factor-auth.fr")
        );
        assert_eq!(
            templates.resolve(TWO_FACTOR_AUTH, Some("de")).as_deref(),
            Some(TWO_FACTOR_AUTH)
        );
        assert_eq!(templates.resolve("nope", None), None);
    }

    #[test]
    fn a_template_marked_on_its_first_line_is_sensitive_in_every_locale() {
        let mut templates = Templates::empty();
        templates
            .add(
                "reset",
                "{{!-- sensitive --}}\r\nYour reset code: {{code}}\n",
            )
            .unwrap();
        templates.add("reset.fr", "Votre code : {{code}}").unwrap();
        templates
            .add("note", "{{text}}\n{{!-- sensitive --}}")
            .unwrap();

        assert!(templates.is_sensitive("reset"));
        assert!(templates.is_sensitive("reset.fr"));
        assert!(!templates.is_sensitive("note"), "only the first line marks");
        assert!(!templates.is_sensitive("unknown"));
        assert_eq!(
            templates
                .render("reset", &json!({"code": "771204"}))
                .unwrap(),
            "Your reset code: 771204",
            "the mark's line is not part of the text"
        );
    }

    #[test]
    fn an_override_without_the_mark_leaves_a_built_in_sensitive() {
        let dir = std::env::temp_dir().join(format!(
            "sms-notify-templates-override-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("two-factor-auth.hbs"), "Code: {{code}}\n").unwrap();
        let templates = Templates::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        assert!(templates.is_sensitive(TWO_FACTOR_AUTH));
        assert_eq!(
            templates
                .render(TWO_FACTOR_AUTH, &json!({"code": "1"}))
                .unwrap(),
            "Code: 1"
        );
    }

    #[test]
    fn a_template_that_does_not_compile_names_itself() {
        let mut templates = Templates::empty();
        let error = templates.add("broken", "{{#if}}").unwrap_err();
        assert!(error.to_string().contains("`broken`"), "{error}");
    }

    #[test]
    fn the_repository_templates_directory_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
        assert!(Templates::load(&dir).unwrap().contains(TWO_FACTOR_AUTH));
    }
}
