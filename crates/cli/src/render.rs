//! `render`: a template's text and what it costs as SMS, with no database.

use std::process::ExitCode;

use anyhow::Context;
use app::usecases::messaging::MAX_BODY_CHARS;
use app::Config;
use domain::{analyze, Encoding};
use serde::Serialize;

use crate::args::RenderArgs;
use crate::failure::Failure;
use crate::send::template_data;

/// What `render --json` prints.
#[derive(Serialize)]
struct Rendered<'a> {
    /// The template file rendered: `NAME.LOCALE` when the locale has a variant.
    template: &'a str,
    text: &'a str,
    encoding: &'static str,
    characters: usize,
    segments: u32,
    warnings: Vec<String>,
}

pub fn run(args: RenderArgs, json: bool) -> anyhow::Result<ExitCode> {
    let config = Config::from_env().context("invalid configuration")?;
    let templates = app::wiring::server::load_templates(&config)?;
    let data = template_data(&templates, &args.template, args.data)?;
    let name = templates
        .resolve(&args.template, args.locale.as_deref())
        .ok_or_else(|| Failure::usage(format!("there is no template `{}`", args.template)))?;
    let text = templates.render(&name, &data)?;
    let analysis = analyze(&text);
    let rendered = Rendered {
        template: &name,
        text: &text,
        encoding: match analysis.encoding {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        },
        characters: analysis.characters,
        segments: analysis.segments,
        warnings: warnings(&text),
    };
    if json {
        crate::print_json(&rendered)?;
        return Ok(ExitCode::SUCCESS);
    }
    if name != args.template {
        println!("template:   {name}");
    }
    println!("text:\n{text}\n");
    println!("encoding:   {}", rendered.encoding);
    println!("characters: {}", rendered.characters);
    println!("segments:   {}", rendered.segments);
    if rendered.warnings.is_empty() {
        println!("warnings:   none");
    }
    for warning in &rendered.warnings {
        println!("warning:    {warning}");
    }
    Ok(ExitCode::SUCCESS)
}

fn warnings(text: &str) -> Vec<String> {
    let analysis = analyze(text);
    let mut warnings = Vec::new();
    if analysis.encoding == Encoding::Ucs2 {
        let mut outside: Vec<char> = Vec::new();
        for c in text.chars() {
            if analyze(&c.to_string()).encoding == Encoding::Ucs2 && !outside.contains(&c) {
                outside.push(c);
            }
        }
        let listed: String = outside.iter().map(|c| format!(" `{c}`")).collect();
        warnings.push(format!(
            "UCS-2 because of{listed}: a segment holds 70 characters instead of 160"
        ));
    }
    if analysis.segments > 1 {
        warnings.push(format!(
            "{} segments: billed as {} SMS",
            analysis.segments, analysis.segments
        ));
    }
    if analysis.characters > MAX_BODY_CHARS {
        warnings.push(format!(
            "longer than {MAX_BODY_CHARS} characters: the service refuses to send it"
        ));
    }
    if text.trim().is_empty() {
        warnings.push("empty: the service refuses to send it".to_owned());
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_short_text_has_no_warning() {
        assert!(warnings("Your code is 123456").is_empty());
    }

    #[test]
    fn characters_outside_gsm7_are_named() {
        let warnings = warnings("Bonjour Zoë 🙂");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("`ë`") && warnings[0].contains("`🙂`"));
    }

    #[test]
    fn long_texts_warn_about_segments_and_the_limit() {
        let warnings = warnings(&"a".repeat(MAX_BODY_CHARS + 1));
        assert!(warnings.iter().any(|w| w.contains("11 segments")));
        assert!(warnings.iter().any(|w| w.contains("refuses")));
    }
}
