//! Writing the pages: every value goes through [`esc`] (or a formatter built on it), so no
//! user's data reaches the page unescaped; the layout every page shares; and numbers and times
//! written for people (thousands separators, "3 minutes ago" with the exact time on hover).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::assets;

/// `text` safe inside an element or a quoted attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `1234567` as `1,234,567`.
pub fn count(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// How long ago (or from now) `at` is, in the largest whole unit.
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds();
    let (magnitude, future) = (seconds.unsigned_abs(), seconds < 0);
    let (amount, unit) = match magnitude {
        0..=59 => {
            return if future {
                "in a moment".into()
            } else {
                "just now".into()
            }
        }
        60..=3_599 => (magnitude / 60, "minute"),
        3_600..=86_399 => (magnitude / 3_600, "hour"),
        _ => (magnitude / 86_400, "day"),
    };
    let plural = if amount == 1 { "" } else { "s" };
    if future {
        format!("in {} {unit}{plural}", count(amount))
    } else {
        format!("{} {unit}{plural} ago", count(amount))
    }
}

/// A `<time>` showing [`relative`], the exact UTC time in its title and `datetime`.
pub fn time(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    time_shown_as(at, &relative(at, now))
}

/// A `<time>` showing `text`, the exact UTC time in its title and `datetime`.
pub fn time_shown_as(at: DateTime<Utc>, text: &str) -> String {
    let exact = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(
        r#"<time datetime="{exact}" title="{}">{}</time>"#,
        at.format("%Y-%m-%d %H:%M:%S UTC"),
        esc(text)
    )
}

/// The dashboard's pages, in the order of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Messages,
    Conversion,
    Fraud,
    Templates,
    Webhooks,
    Providers,
}

const NAV: [(Nav, &str, &str); 7] = [
    (Nav::Overview, "/dashboard", "Overview"),
    (Nav::Messages, "/dashboard/messages", "Messages"),
    (Nav::Conversion, "/dashboard/conversion", "Conversion"),
    (Nav::Fraud, "/dashboard/fraud", "Fraud"),
    (Nav::Templates, "/dashboard/templates", "Templates"),
    (Nav::Webhooks, "/dashboard/webhooks", "Webhooks"),
    (Nav::Providers, "/dashboard/providers", "Providers"),
];

/// What a page shows of the operator in its header: who is logged in, and the token of the
/// logout form.
pub struct Header<'a> {
    pub operator: &'a str,
    pub form_token: &'a str,
}

/// A whole page: `body` inside the shared header, navigation and footer. `scripts`: the
/// URLs of the dashboard's own scripts the page loads ([`assets::url`]; never inline, which the
/// CSP forbids).
pub fn page(
    title: &str,
    active: Option<Nav>,
    header: Option<&Header<'_>>,
    scripts: &[&str],
    body: &str,
) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} · sms-notify</title>
<link rel="icon" href="{}">
<link rel="stylesheet" href="{}">
<link rel="stylesheet" href="{}">
<script src="{}" defer></script>
"#,
        esc(title),
        assets::url("favicon.svg"),
        assets::url("uPlot.min.css"),
        assets::url("dashboard.css"),
        assets::url("dashboard.js"),
    );
    for script in scripts {
        let _ = writeln!(out, r#"<script src="{}" defer></script>"#, esc(script));
    }
    out.push_str("</head>\n<body>\n<a class=\"skip\" href=\"#main\">Skip to content</a>\n");
    out.push_str("<header class=\"top\"><span class=\"brand\">sms-notify</span>\n");
    if let Some(header) = header {
        out.push_str("<nav aria-label=\"Dashboard\"><ul>");
        for (nav, href, label) in NAV {
            let current = if Some(nav) == active {
                r#" aria-current="page""#
            } else {
                ""
            };
            let _ = write!(out, r#"<li><a href="{href}"{current}>{label}</a></li>"#);
        }
        out.push_str("</ul></nav>\n");
        let _ = write!(
            out,
            r#"<form class="logout" method="post" action="/dashboard/logout"><input type="hidden" name="csrf" value="{}"><span>{}</span> <button type="submit">Log out</button></form>"#,
            esc(header.form_token),
            esc(header.operator)
        );
    }
    let _ = write!(
        out,
        "</header>\n<main id=\"main\">\n<h1>{}</h1>\n{body}\n</main>\n</body>\n</html>\n",
        esc(title)
    );
    out
}

/// A table with `headings` (scoped column headers) and already escaped cells; `empty` when
/// there is no row.
pub fn table(caption: &str, headings: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\">{}</p>", esc(empty));
    }
    // Focusable and named, so that a keyboard can scroll a table wider than a phone.
    let mut out = format!(
        "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"{0}\"><table><caption>{0}</caption><thead><tr>",
        esc(caption)
    );
    for heading in headings {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(heading));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn markup_in_data_is_shown_as_text() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
    }

    #[test]
    fn times_read_relative_with_the_exact_time_on_hover() {
        let now = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(relative(now - TimeDelta::seconds(5), now), "just now");
        assert_eq!(relative(now - TimeDelta::minutes(1), now), "1 minute ago");
        assert_eq!(relative(now - TimeDelta::hours(3), now), "3 hours ago");
        assert_eq!(relative(now + TimeDelta::days(2), now), "in 2 days");
        let html = time(now - TimeDelta::minutes(90), now);
        assert!(
            html.contains(r#"title="2026-03-01 10:30:00 UTC""#),
            "{html}"
        );
        assert!(html.contains(">1 hour ago<"), "{html}");
    }
}
