//! The phone-number library's region rules for numbers written in E.164, matched through
//! expressions compiled once per pattern. The library finds each compiled expression by its
//! source text in one LRU behind a process-wide lock, hashing the whole pattern on every match:
//! for a North American number, whose region is told by trying its regions' patterns in turn,
//! that lookup cost more than the matching and made number parsing the largest single cost of
//! an accepted message (`docs/performance.md`). The rules themselves stay the library's: the
//! same metadata, the same order, the same "match at the start" reading, and
//! `agrees_with_the_library_on_every_example_number` holds this module to the library's answers.

use std::collections::HashMap;
use std::sync::{LazyLock, PoisonError, RwLock};

use phonenumber::metadata::{Descriptor, Metadata, DATABASE};
use phonenumber::Type;
use regex::{Regex, RegexBuilder};

/// Compiled expressions kept at most: the patterns of traffic to a few dozen countries. Past
/// it the cache starts again empty rather than growing with every country ever seen.
const CAPACITY: usize = 1024;

/// The most each expression's lazy DFA keeps of the states it has built, per thread using it.
/// The regex crate's default (2 MiB) let the service's memory grow with every new number for
/// as long as it ran, toward that much for each of hundreds of expressions; at this size the
/// matching is no slower (`docs/performance.md`, "The expressions' caches").
const DFA_CACHE_BYTES: usize = 16 * 1024;

/// Compiled expressions by the address of the library's pattern, which lives as long as the
/// library's static database: a word to hash instead of the pattern's text.
static COMPILED: LazyLock<RwLock<HashMap<usize, Regex>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// A number this module cannot judge exactly as the library would: the library decides.
#[derive(Debug)]
pub(super) struct AskTheLibrary;

/// What the library's parse would make of `+` and `digits`, when the number is written as
/// the library keeps it (no trunk prefix to drop): its calling code and country.
pub(super) struct Parsed {
    pub calling_code: u16,
    pub country: Option<String>,
    pub line: Line,
}

/// Where the library's `number_type` reads a parsed number: its region's metadata and where
/// the significant national number starts in the digits (`None`: no region, no type). Kept
/// with the number, so that its line type does not tell the region again.
#[derive(Clone, Copy)]
pub(super) struct Line(Option<(&'static Metadata, usize)>);

/// The library's `parse` of `+digits` (digits only), or [`AskTheLibrary`] wherever it could
/// rewrite the number or refuse it: those cases keep the library's own answer.
pub(super) fn parse_e164(digits: &str) -> Result<Parsed, AskTheLibrary> {
    // The library refuses these itself, each with its own error.
    if digits.len() <= 2 || digits.starts_with('0') {
        return Err(AskTheLibrary);
    }
    // Calling codes are prefix-free: the first one to three digits that name one are it.
    let (calling_code, national) = (1..=3)
        .find_map(|length| {
            let code = digits.get(..length)?.parse::<u16>().ok()?;
            DATABASE.by_code(&code).map(|_| (code, &digits[length..]))
        })
        .ok_or(AskTheLibrary)?;
    if !(2..=17).contains(&national.len()) {
        return Err(AskTheLibrary);
    }
    // The library reads the region from the number without leading zeros (an all-zero one it
    // reads two ways: left to it).
    let significant = national.trim_start_matches('0');
    if significant.is_empty() {
        return Err(AskTheLibrary);
    }
    let source = region_of(calling_code, significant)?;
    let region = metadata(calling_code, &source);
    if let Some(region) = region {
        // Where the region's trunk prefix could be read at the start, the library may drop it.
        let prefix_may_apply = match region.national_prefix_for_parsing() {
            Some(parsing) => {
                matched_at_start(parsing, parsing.as_str(), national)?
                    || region
                        .national_prefix()
                        .is_some_and(|prefix| national.starts_with(prefix))
            }
            None => region
                .national_prefix()
                .is_some_and(|prefix| national.starts_with(prefix)),
        };
        if prefix_may_apply {
            return Err(AskTheLibrary);
        }
    }
    let country = match source {
        Some(Source::Region(region)) => region
            .id()
            .parse::<phonenumber::country::Id>()
            .ok()
            .map(|id| id.as_ref().to_owned()),
        _ => None,
    }
    .or_else(|| main_region(calling_code));
    Ok(Parsed {
        calling_code,
        country,
        // The library asks the type of the number without its leading zeros (the value it
        // keeps).
        line: Line(region.map(|region| (region, digits.len() - significant.len()))),
    })
}

/// The library's `number_type` of `+digits`, read as [`parse_e164`] reads it.
pub(super) fn number_type(digits: &str) -> Result<Type, AskTheLibrary> {
    type_of_line(parse_e164(digits)?.line, digits)
}

/// The library's `number_type` of `+digits`, whose [`Line`] a parse found.
pub(super) fn type_of_line(line: Line, digits: &str) -> Result<Type, AskTheLibrary> {
    match line.0 {
        Some((region, start)) => type_of(region, digits.get(start..).ok_or(AskTheLibrary)?),
        None => Ok(Type::Unknown),
    }
}

/// A calling code's main country, or its first region: where a number of a shared
/// code that matches no region's patterns is attributed (North America's to the US).
pub(super) fn main_region(calling_code: u16) -> Option<String> {
    DATABASE.by_code(&calling_code).and_then(|regions| {
        regions
            .iter()
            .find(|region| region.is_main_country_for_code())
            .or(regions.first())
            .map(|region| region.id().to_owned())
    })
}

/// What the library's `validator::source_for` answers.
enum Source {
    Region(&'static Metadata),
    /// A code of no country (`001`: `+800`, `+882`, ...).
    NonGeographic,
}

fn metadata(calling_code: u16, source: &Option<Source>) -> Option<&'static Metadata> {
    match source {
        Some(Source::Region(region)) => Some(region),
        Some(Source::NonGeographic) => DATABASE
            .by_code(&calling_code)
            .and_then(|regions| regions.into_iter().next()),
        None => None,
    }
}

fn region_of(calling_code: u16, national: &str) -> Result<Option<Source>, AskTheLibrary> {
    let Some(regions) = DATABASE.region(&calling_code) else {
        return Ok(None);
    };
    if let [only] = regions.as_slice() {
        return Ok(if *only == "001" {
            Some(Source::NonGeographic)
        } else {
            DATABASE
                .by_id(*only)
                .filter(|_| only.parse::<phonenumber::country::Id>().is_ok())
                .map(Source::Region)
        });
    }
    for id in regions {
        let region = DATABASE.by_id(id).ok_or(AskTheLibrary)?;
        let belongs = match region.leading_digits() {
            Some(leading) => matched_at_start(leading, leading.as_str(), national)?,
            None => has_a_type(region, national)?,
        };
        if belongs {
            return Ok(Some(Source::Region(region)));
        }
    }
    Ok(None)
}

/// The library's `number_type(..) != Type::Unknown`.
fn has_a_type(region: &Metadata, national: &str) -> Result<bool, AskTheLibrary> {
    Ok(type_of(region, national)? != Type::Unknown)
}

/// The library's `validator::number_type`: the general pattern, then each kind's in its order.
fn type_of(region: &Metadata, national: &str) -> Result<Type, AskTheLibrary> {
    let descriptors = region.descriptors();
    if !describes(descriptors.general(), national)? {
        return Ok(Type::Unknown);
    }
    for (descriptor, kind) in [
        (descriptors.premium_rate(), Type::PremiumRate),
        (descriptors.toll_free(), Type::TollFree),
        (descriptors.shared_cost(), Type::SharedCost),
        (descriptors.voip(), Type::Voip),
        (descriptors.personal_number(), Type::PersonalNumber),
        (descriptors.pager(), Type::Pager),
        (descriptors.uan(), Type::Uan),
        (descriptors.voicemail(), Type::Voicemail),
    ] {
        if let Some(descriptor) = descriptor {
            if describes(descriptor, national)? {
                return Ok(kind);
            }
        }
    }
    let (fixed, mobile) = (descriptors.fixed_line(), descriptors.mobile());
    if let Some(fixed) = fixed {
        if describes(fixed, national)? {
            let pattern = fixed.national_number().as_str();
            let either = match mobile {
                Some(mobile) if mobile.national_number().as_str() == pattern => true,
                Some(mobile) => describes(mobile, national)?,
                None => false,
            };
            return Ok(if either {
                Type::FixedLineOrMobile
            } else {
                Type::FixedLine
            });
        }
    }
    if let Some(mobile) = mobile {
        if describes(mobile, national)? {
            return Ok(Type::Mobile);
        }
    }
    Ok(Type::Unknown)
}

/// The library's `Descriptor::is_match`.
fn describes(descriptor: &Descriptor, national: &str) -> Result<bool, AskTheLibrary> {
    let lengths = descriptor.possible_length();
    if !lengths.is_empty() && !lengths.contains(&(national.len() as u16)) {
        return Ok(false);
    }
    let pattern = descriptor.national_number();
    matched_at_start(pattern, pattern.as_str(), national)
}

/// Whether the library's expression `pattern` (its source `source`) finds a match that starts
/// at the start of `text`, as the library reads its patterns (`find`, then the match's start).
/// A match starting there exists exactly when the leftmost one starts there, so the
/// expression is compiled anchored and only asked whether it matches: no other start is tried,
/// no match's end looked for (the newline ends the source's last line, whitespace here).
fn matched_at_start<T>(pattern: &T, source: &str, text: &str) -> Result<bool, AskTheLibrary> {
    let key = std::ptr::from_ref(pattern) as usize;
    if let Some(compiled) = COMPILED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Ok(compiled.is_match(text));
    }
    // As the library compiles its patterns (`Database::from`), but anchored and for the
    // cache's size.
    let compiled = RegexBuilder::new(&format!("^(?:{source}\n)"))
        .ignore_whitespace(true)
        .dfa_size_limit(DFA_CACHE_BYTES)
        .build()
        .map_err(|_| AskTheLibrary)?;
    let answer = compiled.is_match(text);
    let mut cache = COMPILED.write().unwrap_or_else(PoisonError::into_inner);
    if cache.len() >= CAPACITY {
        cache.clear();
    }
    cache.insert(key, compiled);
    Ok(answer)
}
