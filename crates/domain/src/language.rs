//! Which language a code is written in when the client does not say: the language most spoken
//! in the number's country among those the service has texts for, and the fallbacks from a
//! language tag the service lacks to one it has (`fr-CA` to `fr`, `zh-TW` to `zh-HK`).
//!
//! Where a country has several languages, its most spoken one wins (Switzerland: German,
//! Belgium: Dutch, Canada: English); clients pass `locale` for the others. A country whose
//! languages have no text of their own is absent, and gets English, rather than a neighbour's
//! language its people may resent or not read (the Baltic states, Georgia, the Balkans).

/// The locale whose texts every other falls back to.
pub const FALLBACK_LOCALE: &str = "en";

/// Locale, then the ISO 3166 countries where it is the most spoken language among the locales
/// with built-in texts. Choices worth a word:
/// - `zh-HK` (Traditional characters) for Taiwan and Macau as for Hong Kong: the script is
///   what a reader notices; the texts use standard written Chinese, not Cantonese words.
/// - `pt` for Portugal and Lusophone Africa and Timor-Leste, `pt-BR` for Brazil only.
/// - `ru` for the Central Asian states and Armenia and Azerbaijan, whose own languages have no
///   text and where Russian is the common second language; not for Ukraine, Georgia or the
///   Baltic states.
/// - `cs` for Slovakia: Slovak has no text, and Czech reads as easily there.
/// - `hi` for India (its most spoken language), `en` for Pakistan (Urdu has no text, and
///   Hindi's Devanagari is not its script).
/// - `fr` for Luxembourg and francophone Africa (the written language there), `ar` for the
///   Maghreb and the Arab League, `da` for Greenland and the Faroes.
const COUNTRY_LANGUAGES: &[(&str, &[&str])] = &[
    (
        "en",
        &[
            "US", "GB", "IE", "AU", "NZ", "CA", "ZA", "NG", "GH", "KE", "UG", "TZ", "ZM", "ZW",
            "MW", "BW", "NA", "SL", "LR", "GM", "RW", "JM", "TT", "BS", "BB", "BZ", "GY", "AG",
            "DM", "GD", "KN", "LC", "VC", "SG", "PH", "PK", "MT", "GI", "IM", "JE", "GG", "BM",
            "KY", "VG", "VI", "GU", "AS", "MP", "FJ", "PG", "SB", "VU", "WS", "TO",
        ],
    ),
    (
        "fr",
        &[
            "FR", "MC", "LU", "GP", "MQ", "GF", "RE", "YT", "PM", "NC", "PF", "WF", "BL", "MF",
            "SN", "CI", "ML", "BF", "NE", "TG", "BJ", "GN", "CM", "CD", "CG", "GA", "CF", "TD",
            "MG", "HT", "DJ", "BI",
        ],
    ),
    ("de", &["DE", "AT", "CH", "LI"]),
    ("it", &["IT", "SM", "VA"]),
    (
        "es",
        &[
            "ES", "MX", "AR", "CO", "PE", "VE", "CL", "EC", "GT", "CU", "BO", "DO", "HN", "PY",
            "SV", "NI", "CR", "PA", "UY", "PR", "GQ", "AD",
        ],
    ),
    ("pt", &["PT", "AO", "MZ", "CV", "GW", "ST", "TL"]),
    ("pt-BR", &["BR"]),
    ("nl", &["NL", "BE", "SR", "AW", "CW", "SX", "BQ"]),
    ("pl", &["PL"]),
    (
        "ru",
        &["RU", "BY", "KZ", "KG", "TJ", "UZ", "TM", "AM", "AZ"],
    ),
    ("uk", &["UA"]),
    ("tr", &["TR"]),
    (
        "ar",
        &[
            "SA", "AE", "EG", "IQ", "JO", "KW", "LB", "LY", "MA", "OM", "QA", "SD", "SY", "TN",
            "YE", "BH", "DZ", "PS", "MR", "SO", "KM", "EH",
        ],
    ),
    ("he", &["IL"]),
    ("hi", &["IN"]),
    ("bn", &["BD"]),
    ("ja", &["JP"]),
    ("ko", &["KR", "KP"]),
    ("zh-CN", &["CN"]),
    ("zh-HK", &["HK", "MO", "TW"]),
    ("id", &["ID"]),
    ("ms", &["MY", "BN"]),
    ("th", &["TH"]),
    ("vi", &["VN"]),
    ("sv", &["SE", "AX"]),
    ("da", &["DK", "GL", "FO"]),
    ("nb", &["NO", "SJ"]),
    ("fi", &["FI"]),
    ("cs", &["CZ", "SK"]),
    ("ro", &["RO", "MD"]),
    ("hu", &["HU"]),
    ("el", &["GR", "CY"]),
];

/// The locale for a number in `country` (ISO 3166, any case): `fr` for `FR`; `None` for a
/// country with no language of its own among the texts, which then gets English.
pub fn language_of_country(country: &str) -> Option<&'static str> {
    let country = country.to_ascii_uppercase();
    COUNTRY_LANGUAGES
        .iter()
        .find(|(_, countries)| countries.contains(&country.as_str()))
        .map(|(locale, _)| *locale)
}

/// Every locale [`language_of_country`] may answer, for a test that each has its texts.
pub fn country_locales() -> impl Iterator<Item = &'static str> {
    COUNTRY_LANGUAGES.iter().map(|(locale, _)| *locale)
}

/// The locales to try for a requested tag, most specific first, without the final English:
/// the tag in its usual case (`pt-br` as `pt-BR`), the locale a tag is usually served by
/// (`zh-TW` and `zh-Hant` by `zh-HK`, `no` by `nb`, `iw` by `he`), then its language (`fr`).
pub fn locale_candidates(tag: &str) -> Vec<String> {
    let parts: Vec<&str> = tag.split(['-', '_']).filter(|p| !p.is_empty()).collect();
    let Some((language, subtags)) = parts.split_first() else {
        return Vec::new();
    };
    let language = language.to_ascii_lowercase();
    let subtags: Vec<String> = subtags
        .iter()
        .map(|subtag| match subtag.len() {
            // A region (`BR`) in capitals, a script (`Hant`) capitalised.
            2 => subtag.to_ascii_uppercase(),
            4 => {
                let lower = subtag.to_ascii_lowercase();
                let mut chars = lower.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            }
            _ => subtag.to_ascii_lowercase(),
        })
        .collect();
    let full = std::iter::once(language.clone())
        .chain(subtags.iter().cloned())
        .collect::<Vec<_>>()
        .join("-");
    let mut candidates = vec![full];
    let has = |subtag: &str| subtags.iter().any(|s| s == subtag);
    let alias = match language.as_str() {
        "zh" if has("Hant") || has("TW") || has("MO") || has("HK") => Some("zh-HK"),
        "zh" => Some("zh-CN"),
        "no" | "nn" | "nb" => Some("nb"),
        "iw" => Some("he"),
        "in" => Some("id"),
        "pt" if has("BR") => Some("pt-BR"),
        _ => None,
    };
    candidates.extend(alias.map(str::to_owned));
    candidates.push(language);
    let mut seen = Vec::new();
    candidates.retain(|candidate| {
        let new = !seen.contains(candidate);
        seen.push(candidate.clone());
        new
    });
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_country_gets_its_most_spoken_language_among_the_texts() {
        for (country, locale) in [
            ("FR", "fr"),
            ("BR", "pt-BR"),
            ("PT", "pt"),
            ("HK", "zh-HK"),
            ("TW", "zh-HK"),
            ("CN", "zh-CN"),
            ("CH", "de"),
            ("BE", "nl"),
            ("CA", "en"),
            ("mx", "es"),
        ] {
            assert_eq!(language_of_country(country), Some(locale), "{country}");
        }
    }

    #[test]
    fn a_country_whose_languages_have_no_text_gets_none() {
        for country in ["EE", "GE", "RS", "IR", "XX"] {
            assert_eq!(language_of_country(country), None, "{country}");
        }
    }

    #[test]
    fn no_country_is_given_two_languages() {
        let mut seen = std::collections::BTreeSet::new();
        for (_, countries) in COUNTRY_LANGUAGES {
            for country in *countries {
                assert!(seen.insert(*country), "{country} is listed twice");
            }
        }
    }

    #[test]
    fn a_tag_falls_back_to_its_usual_locale_then_its_language() {
        assert_eq!(locale_candidates("fr-CA"), ["fr-CA", "fr"]);
        assert_eq!(locale_candidates("pt-br"), ["pt-BR", "pt"]);
        assert_eq!(locale_candidates("zh_TW"), ["zh-TW", "zh-HK", "zh"]);
        assert_eq!(
            locale_candidates("zh-hant-hk"),
            ["zh-Hant-HK", "zh-HK", "zh"]
        );
        assert_eq!(locale_candidates("zh"), ["zh", "zh-CN"]);
        assert_eq!(locale_candidates("no"), ["no", "nb"]);
        assert_eq!(locale_candidates("DE"), ["de"]);
        assert!(locale_candidates("").is_empty());
    }
}
