//! SMS and voice text: Handlebars templates, rendered strictly and without HTML escaping. The
//! two-factor texts in every built-in language are compiled in (`texts/`); `templates/*.hbs`
//! in the configured directory add templates and override built-in ones.
//!
//! Must not depend on any adapter, database, HTTP client or framework: rendering is pure once
//! the templates are loaded.

mod catalogue;
mod plural;
mod voice;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use domain::language::{locale_candidates, FALLBACK_LOCALE};
use domain::Brand;
use handlebars::{Handlebars, RenderErrorReason};

pub use catalogue::TemplateInfo;
pub use plural::{category as plural_category, Category as PluralCategory};
pub use voice::spoken_digits;
// Segment arithmetic lives in the domain (providers need it too); re-exported for callers that
// think of it as part of rendering.
pub use domain::{analyze, outside_gsm7, Encoding, SegmentInfo};

/// The template every one-time code is sent with by SMS or WhatsApp.
pub const TWO_FACTOR_AUTH: &str = "two-factor-auth";
/// The template a voice call says a one-time code with: it receives `code_digits` (see
/// [`spoken_digits`]), `brand` and `expiryMinutes`, and says the code twice.
pub const TWO_FACTOR_AUTH_VOICE: &str = "two-factor-auth-voice";
/// The template a one-time code confirming a payment (PSD2 dynamic linking) is sent with by
/// SMS: it also receives `amount`, `currency` and `payee`, and names them. Its texts fit two
/// segments with the longest payee and amount a request may carry.
pub const TWO_FACTOR_AUTH_TRANSACTION: &str = "two-factor-auth-transaction";
/// The voice template of a code confirming a payment: [`TWO_FACTOR_AUTH_VOICE`]'s data and
/// `amount`, `currency` and `payee`.
pub const TWO_FACTOR_AUTH_TRANSACTION_VOICE: &str = "two-factor-auth-transaction-voice";
/// The variable every template may use without the caller giving it: the configured brand.
pub const BRAND: &str = "brand";

/// The first line that makes a template sensitive: its messages carry a secret (a code), so
/// their body is never logged and is emptied once they leave the queue for good.
const SENSITIVE_MARK: &str = "{{!-- sensitive --}}";

/// The two-factor templates without a locale: English, as `.en` is.
const BUILT_IN: &[(&str, &str)] = &[
    (
        TWO_FACTOR_AUTH,
        include_str!("../texts/two-factor-auth.en.hbs"),
    ),
    (
        TWO_FACTOR_AUTH_VOICE,
        include_str!("../texts/two-factor-auth-voice.en.hbs"),
    ),
    (
        TWO_FACTOR_AUTH_TRANSACTION,
        include_str!("../texts/two-factor-auth-transaction.en.hbs"),
    ),
    (
        TWO_FACTOR_AUTH_TRANSACTION_VOICE,
        include_str!("../texts/two-factor-auth-transaction-voice.en.hbs"),
    ),
];

/// The built-in translations: `texts/two-factor-auth.LOCALE.hbs` (SMS) and
/// `texts/two-factor-auth-voice.LOCALE.hbs` (voice), and their `-transaction` variants
/// (PSD2), for each locale listed once here.
macro_rules! built_in_translations {
    ($($locale:literal),* $(,)?) => {
        /// The locales the two-factor texts are built in for, SMS and voice.
        pub const BUILT_IN_LOCALES: &[&str] = &[$($locale),*];
        const TRANSLATIONS: &[(&str, &str)] = &[$(
            (
                concat!("two-factor-auth.", $locale),
                include_str!(concat!("../texts/two-factor-auth.", $locale, ".hbs")),
            ),
            (
                concat!("two-factor-auth-voice.", $locale),
                include_str!(concat!("../texts/two-factor-auth-voice.", $locale, ".hbs")),
            ),
            (
                concat!("two-factor-auth-transaction.", $locale),
                include_str!(concat!("../texts/two-factor-auth-transaction.", $locale, ".hbs")),
            ),
            (
                concat!("two-factor-auth-transaction-voice.", $locale),
                include_str!(concat!(
                    "../texts/two-factor-auth-transaction-voice.",
                    $locale,
                    ".hbs"
                )),
            ),
        )*];
    };
}

built_in_translations!(
    "en", "es", "fr", "de", "it", "pt", "pt-BR", "nl", "pl", "ru", "uk", "tr", "ar", "he", "hi",
    "bn", "ja", "ko", "zh-CN", "zh-HK", "id", "ms", "th", "vi", "sv", "da", "nb", "fi", "cs", "ro",
    "hu", "el",
);

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
    /// Variables every template may read without the caller giving them ([`BRAND`]).
    defaults: serde_json::Map<String, serde_json::Value>,
}

impl Templates {
    /// Only the templates compiled into the binary.
    pub fn built_in() -> Result<Self, LoadError> {
        Self::with_files(Vec::new())
    }

    /// The built-in templates, overridden and extended by every `NAME.hbs` in `dir`. A
    /// localised variant is `NAME.LOCALE.hbs` (`two-factor-auth.fr.hbs`), registered as
    /// `NAME.LOCALE`. A file that overrides a built-in template itself (`two-factor-auth.hbs`)
    /// drops its built-in translations: they would say what the operator chose not to, so the
    /// directory provides the locales it wants.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
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
        let mut files = Vec::new();
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
            files.push((name.to_owned(), source));
        }
        Self::with_files(files)
    }

    /// The built-in templates, then `files` (name, source) over them.
    fn with_files(files: Vec<(String, String)>) -> Result<Self, LoadError> {
        let overridden: BTreeSet<&str> = files
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| !name.contains('.'))
            .collect();
        let mut templates = Self::empty();
        for (name, source) in BUILT_IN {
            templates.add(name, source)?;
        }
        for (name, source) in TRANSLATIONS {
            if !overridden.contains(template_of(name)) {
                templates.add(name, source)?;
            }
        }
        for (name, source) in &files {
            templates.add(name, source)?;
        }
        Ok(templates)
    }

    /// The brand every template reads as `brand` unless its data gives one; unless set,
    /// [`Brand::default`].
    pub fn with_brand(mut self, brand: &Brand) -> Self {
        self.defaults
            .insert(BRAND.to_owned(), serde_json::Value::from(brand.as_str()));
        self
    }

    fn empty() -> Self {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        // SMS is plain text: `&`, `<` and `'` must arrive as typed, not as HTML entities.
        registry.register_escape_fn(handlebars::no_escape);
        registry.register_helper(plural::PLURAL_HELPER, Box::new(plural::plural_helper));
        let mut defaults = serde_json::Map::new();
        defaults.insert(
            BRAND.to_owned(),
            serde_json::Value::from(Brand::default().as_str()),
        );
        Self {
            registry,
            sources: BTreeMap::new(),
            sensitive: BTreeSet::new(),
            defaults,
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

    /// The most specific template for `locale`: `NAME.LOCALE`, then the locale that usually
    /// serves it (`zh-TW`: `zh-HK`), then `NAME.LANGUAGE` (`fr-CA`: `fr`), then English
    /// (`NAME.en`), then `NAME`. Without a locale, `NAME`.
    pub fn resolve(&self, name: &str, locale: Option<&str>) -> Option<String> {
        if let Some(locale) = locale {
            let candidates = locale_candidates(locale);
            let candidates = candidates
                .iter()
                .map(String::as_str)
                .chain([FALLBACK_LOCALE]);
            for candidate in candidates {
                let localised = format!("{name}.{candidate}");
                if self.contains(&localised) {
                    return Some(localised);
                }
            }
        }
        self.contains(name).then(|| name.to_owned())
    }

    /// Whether `variable` has a value when the caller's data has none (`brand`).
    pub(crate) fn is_default(&self, variable: &str) -> bool {
        self.defaults.contains_key(variable)
    }

    pub fn render(&self, name: &str, data: &serde_json::Value) -> Result<String, RenderError> {
        if !self.contains(name) {
            return Err(RenderError::UnknownTemplate(name.to_owned()));
        }
        let with_defaults;
        let data = match data {
            serde_json::Value::Object(given)
                if self.defaults.keys().any(|key| !given.contains_key(key)) =>
            {
                let mut merged = self.defaults.clone();
                merged.extend(
                    given
                        .iter()
                        .map(|(key, value)| (key.clone(), value.clone())),
                );
                with_defaults = serde_json::Value::Object(merged);
                &with_defaults
            }
            _ => data,
        };
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

    /// A directory of its own per test, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str, files: &[(&str, &str)]) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "sms-notify-templates-{name}-{}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            for (file, text) in files {
                std::fs::write(dir.join(file), text).unwrap();
            }
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_directory_adds_templates_and_locales_and_overrides_built_ins() {
        let dir = TempDir::new(
            "adds",
            &[
                ("welcome.hbs", "Hi {{name}}\n"),
                ("two-factor-auth.fr.hbs", "Votre code : {{code}}"),
                ("README.txt", "not a template"),
            ],
        );
        let templates = Templates::load(&dir.0).unwrap();

        assert!(templates.contains("welcome"));
        assert!(!templates.names().any(|name| name.starts_with("README")));
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
            templates
                .render("two-factor-auth.fr", &json!({"code": "1"}))
                .unwrap(),
            "Votre code : 1",
            "the directory's French replaces the built-in one"
        );
        assert_eq!(
            templates.resolve(TWO_FACTOR_AUTH, Some("de")).as_deref(),
            Some("two-factor-auth.de"),
            "the other built-in translations stay"
        );
        assert_eq!(templates.resolve("nope", None), None);
    }

    #[test]
    fn a_directory_that_overrides_a_built_in_template_provides_its_locales() {
        let dir = TempDir::new(
            "overrides",
            &[
                ("two-factor-auth.hbs", "Code: {{code}}\n"),
                ("two-factor-auth.de.hbs", "Code (de): {{code}}\n"),
            ],
        );
        let templates = Templates::load(&dir.0).unwrap();

        assert_eq!(
            templates.resolve(TWO_FACTOR_AUTH, Some("fr")).as_deref(),
            Some(TWO_FACTOR_AUTH),
            "no built-in French beside the operator's own text"
        );
        assert_eq!(
            templates.resolve(TWO_FACTOR_AUTH, Some("de-AT")).as_deref(),
            Some("two-factor-auth.de")
        );
        let catalogue = templates.catalogue();
        let sms = catalogue
            .iter()
            .find(|info| info.name == TWO_FACTOR_AUTH)
            .unwrap();
        assert_eq!(sms.locales, ["de"]);
        assert_eq!(
            templates
                .resolve(TWO_FACTOR_AUTH_VOICE, Some("fr"))
                .as_deref(),
            Some("two-factor-auth-voice.fr"),
            "another template keeps its translations"
        );
    }

    #[test]
    fn a_locale_falls_back_to_its_language_then_english() {
        let templates = Templates::built_in().unwrap();
        for (asked, used) in [
            ("fr-CA", "two-factor-auth.fr"),
            ("pt-br", "two-factor-auth.pt-BR"),
            ("pt-AO", "two-factor-auth.pt"),
            ("zh-TW", "two-factor-auth.zh-HK"),
            ("zh-Hans", "two-factor-auth.zh-CN"),
            ("no", "two-factor-auth.nb"),
            ("xx-YY", "two-factor-auth.en"),
            ("en-GB", "two-factor-auth.en"),
        ] {
            assert_eq!(
                templates.resolve(TWO_FACTOR_AUTH, Some(asked)).as_deref(),
                Some(used),
                "{asked}"
            );
        }
        assert_eq!(
            templates.resolve(TWO_FACTOR_AUTH, None).as_deref(),
            Some(TWO_FACTOR_AUTH)
        );
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
        let dir = TempDir::new("unmarked", &[("two-factor-auth.hbs", "Code: {{code}}\n")]);
        let templates = Templates::load(&dir.0).unwrap();

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

    #[test]
    fn the_brand_is_configured_once_and_data_may_name_another() {
        let templates = Templates::built_in()
            .unwrap()
            .with_brand(&Brand::parse("Acme Bank").unwrap());
        let data = json!({"code": "123456", "expiryMinutes": 10});
        let text = templates.render("two-factor-auth.de", &data).unwrap();
        assert!(text.contains("für Acme Bank lautet: 123456"), "{text}");
        let data = json!({"code": "123456", "expiryMinutes": 10, "brand": "Other"});
        let text = templates.render(TWO_FACTOR_AUTH, &data).unwrap();
        assert!(text.starts_with("Your Other verification code"), "{text}");
    }

    #[test]
    fn a_count_takes_the_form_its_language_needs() {
        let templates = Templates::built_in().unwrap();
        let text = |name: &str, minutes: u64| {
            templates
                .render(
                    name,
                    &json!({"code": "1", "code_digits": "1", "expiryMinutes": minutes}),
                )
                .unwrap()
        };
        assert!(text(TWO_FACTOR_AUTH, 1).contains("expire in 1 minute."));
        assert!(text(TWO_FACTOR_AUTH, 2).contains("expire in 2 minutes."));
        for (minutes, words) in [
            (1, "1 минуту"),
            (3, "3 минуты"),
            (5, "5 минут"),
            (21, "21 минуту"),
        ] {
            let said = text("two-factor-auth-voice.ru", minutes);
            assert!(said.contains(words), "{said}");
        }
        assert!(text("two-factor-auth.ar", 5).contains("5 دقائق"));
        assert!(text("two-factor-auth.ar", 15).contains("15 دقيقة"));
        assert!(text("two-factor-auth.fi", 1).contains("1 minuutin"));
        assert!(text("two-factor-auth.fi", 10).contains("10 minuuttia"));
    }
}
