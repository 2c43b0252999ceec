//! `render`: a template's text and what it costs as SMS, with no database.

use std::process::ExitCode;

use anyhow::Context;
use app::messaging::MAX_BODY_CHARS;
use app::Config;
use domain::{analyze, Encoding};

use crate::args::RenderArgs;
use crate::send::template_data;

pub fn run(args: RenderArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_env().context("invalid configuration")?;
    let templates = app::server::load_templates(&config)?;
    let text = templates.render(&args.template, &template_data(args.data))?;
    let analysis = analyze(&text);
    println!("text:\n{text}\n");
    println!(
        "encoding:   {}",
        match analysis.encoding {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    );
    println!("characters: {}", analysis.characters);
    println!("segments:   {}", analysis.segments);
    let warnings = warnings(&text);
    if warnings.is_empty() {
        println!("warnings:   none");
    }
    for warning in warnings {
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
