//! The `plural` helper: the form of a word that goes with a count, by the rules of the
//! template's language (`{{plural expiryMinutes one="minute" other="minutes"}}`), so that a
//! text reads right for 1, 2, 5 or 21 minutes in Russian as in English.
//!
//! The rules are the CLDR plural categories for whole numbers, for the languages of the
//! built-in texts; a language without rules here (or a template without a locale) counts as
//! English. A category the template gives no form for takes its `other` form.

use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderErrorReason,
};

/// The name templates call the helper by.
pub const PLURAL_HELPER: &str = "plural";

/// A CLDR plural category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Zero,
    One,
    Two,
    Few,
    Many,
    Other,
}

impl Category {
    fn name(self) -> &'static str {
        match self {
            Category::Zero => "zero",
            Category::One => "one",
            Category::Two => "two",
            Category::Few => "few",
            Category::Many => "many",
            Category::Other => "other",
        }
    }
}

/// The category of the whole number `n` in `locale` (`ru`, `pt-BR`).
pub fn category(locale: &str, n: u64) -> Category {
    let language = locale.split(['-', '_']).next().unwrap_or(locale);
    let (n10, n100) = (n % 10, n % 100);
    let slavic_few = (2..=4).contains(&n10) && !(12..=14).contains(&n100);
    match language {
        "ja" | "ko" | "zh" | "id" | "ms" | "th" | "vi" => Category::Other,
        // Brazilian Portuguese, French, Hindi and Bengali count 0 with 1; Portugal's does not.
        "pt" if locale.eq_ignore_ascii_case("pt-BR") => one_if(n <= 1),
        "fr" | "hi" | "bn" => one_if(n <= 1),
        "ru" | "uk" | "be" => {
            if n10 == 1 && n100 != 11 {
                Category::One
            } else if slavic_few {
                Category::Few
            } else {
                Category::Many
            }
        }
        "pl" => match n {
            1 => Category::One,
            _ if slavic_few => Category::Few,
            _ => Category::Many,
        },
        "cs" | "sk" => match n {
            1 => Category::One,
            2..=4 => Category::Few,
            _ => Category::Other,
        },
        "ro" => match n {
            1 => Category::One,
            0 => Category::Few,
            _ if (1..=19).contains(&n100) => Category::Few,
            _ => Category::Other,
        },
        "ar" => match n {
            0 => Category::Zero,
            1 => Category::One,
            2 => Category::Two,
            _ if (3..=10).contains(&n100) => Category::Few,
            _ if (11..=99).contains(&n100) => Category::Many,
            _ => Category::Other,
        },
        "he" | "iw" => match n {
            1 => Category::One,
            2 => Category::Two,
            _ => Category::Other,
        },
        _ => one_if(n == 1),
    }
}

fn one_if(one: bool) -> Category {
    if one {
        Category::One
    } else {
        Category::Other
    }
}

/// `{{plural COUNT one="…" few="…" other="…"}}`: the form for COUNT's category in the
/// language of the template being rendered (`two-factor-auth.ru` is Russian).
pub fn plural_helper(
    helper: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    render_context: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let count = helper
        .param(0)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex(PLURAL_HELPER, 0))?;
    // A count that is no whole number (a preview's `"ten"`) takes the `other` form rather than
    // failing the text.
    let count = count.value().as_u64().or_else(|| {
        count
            .value()
            .as_str()
            .and_then(|text| text.trim().parse().ok())
    });
    let locale = render_context
        .get_root_template_name()
        .and_then(|name| name.split_once('.'))
        .map_or(domain::language::FALLBACK_LOCALE, |(_, locale)| locale);
    let category = count.map_or(Category::Other, |count| category(locale, count));
    let form = helper
        .hash_get(category.name())
        .or_else(|| helper.hash_get(Category::Other.name()))
        .and_then(|form| form.value().as_str())
        .ok_or_else(|| {
            RenderErrorReason::Other(format!(
                "`{PLURAL_HELPER}` needs an `other` form (and a `{}` form)",
                category.name()
            ))
        })?;
    out.write(form)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_that_is_no_whole_number_takes_the_other_form() {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_helper(PLURAL_HELPER, Box::new(plural_helper));
        let source = r#"{{n}} {{plural n one="minute" other="minutes"}}"#;
        registry.register_template_string("t", source).unwrap();
        let render = |n: serde_json::Value| {
            registry
                .render("t", &serde_json::json!({ "n": n }))
                .unwrap()
        };
        assert_eq!(render(1.into()), "1 minute");
        assert_eq!(render("1".into()), "1 minute");
        assert_eq!(render("ten".into()), "ten minutes");
        assert_eq!(render(1.5.into()), "1.5 minutes");
    }

    #[test]
    fn each_language_counts_by_its_own_rules() {
        use Category::*;
        let cases: &[(&str, &[(u64, Category)])] = &[
            ("en", &[(0, Other), (1, One), (2, Other), (21, Other)]),
            ("fr", &[(0, One), (1, One), (2, Other)]),
            ("pt", &[(0, Other), (1, One)]),
            ("pt-BR", &[(0, One), (1, One), (2, Other)]),
            (
                "ru",
                &[
                    (1, One),
                    (2, Few),
                    (5, Many),
                    (11, Many),
                    (12, Many),
                    (21, One),
                    (22, Few),
                    (111, Many),
                ],
            ),
            ("uk", &[(1, One), (3, Few), (10, Many)]),
            (
                "pl",
                &[(1, One), (4, Few), (5, Many), (21, Many), (22, Few)],
            ),
            ("cs", &[(1, One), (3, Few), (5, Other)]),
            (
                "ro",
                &[
                    (1, One),
                    (0, Few),
                    (10, Few),
                    (19, Few),
                    (20, Other),
                    (101, Few),
                ],
            ),
            (
                "ar",
                &[
                    (0, Zero),
                    (1, One),
                    (2, Two),
                    (3, Few),
                    (10, Few),
                    (11, Many),
                    (99, Many),
                    (100, Other),
                    (103, Few),
                ],
            ),
            ("he", &[(1, One), (2, Two), (10, Other)]),
            ("ja", &[(1, Other)]),
        ];
        for (locale, counts) in cases {
            for (n, expected) in *counts {
                assert_eq!(category(locale, *n), *expected, "{locale} {n}");
            }
        }
    }
}
