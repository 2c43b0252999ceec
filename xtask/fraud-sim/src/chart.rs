//! The run as a picture (`chart.png`): codes sent, codes refused and conversion hour by hour,
//! under a timeline of when the attacks and the surge ran. Drawn by hand into an RGB buffer
//! (lines, bands, an 8x8 bitmap font) and encoded with the `png` crate: a plotting library
//! would bring system fonts or an image stack for three line charts.

use std::io::BufWriter;
use std::path::Path;

use anyhow::Context as _;

use crate::tally::Hour;

const WIDTH: usize = 1400;
const PANEL_HEIGHT: usize = 260;
/// A timeline row per band above the panels.
const LANE: usize = 14;
const TIMELINE_TOP: usize = 12;
const LEFT: usize = 112;
const RIGHT: usize = 30;
const GAP: usize = 50;
const HEIGHT: usize = TIMELINE_TOP + 6 * LANE + GAP / 2 + 3 * PANEL_HEIGHT + 2 * GAP + 50;

type Rgb = [u8; 3];
const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [30, 30, 30];
const GRID: Rgb = [225, 225, 225];
const BLUE: Rgb = [40, 90, 200];
const RED: Rgb = [210, 40, 40];
const ORANGE: Rgb = [240, 140, 20];
const GREEN: Rgb = [30, 150, 60];
const GREY: Rgb = [120, 120, 120];
const ATTACK_BAND: Rgb = [253, 226, 226];
const SURGE_BAND: Rgb = [222, 244, 226];

/// A stretch of hours on the timeline, with its label.
pub struct Band {
    pub label: String,
    pub from_hour: f64,
    pub to_hour: f64,
    pub attack: bool,
}

struct Canvas {
    pixels: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        Self {
            pixels: WHITE.repeat(WIDTH * HEIGHT),
        }
    }

    fn set(&mut self, x: i64, y: i64, color: Rgb) {
        if (0..WIDTH as i64).contains(&x) && (0..HEIGHT as i64).contains(&y) {
            let at = (y as usize * WIDTH + x as usize) * 3;
            self.pixels[at..at + 3].copy_from_slice(&color);
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, color: Rgb) {
        for y in y0.min(y1)..=y0.max(y1) {
            for x in x0.min(x1)..=x0.max(x1) {
                self.set(x, y, color);
            }
        }
    }

    /// A line two pixels thick (Bresenham, doubled downwards).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), color: Rgb) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut error) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, color);
            self.set(x, y + 1, color);
            if x == x1 && y == y1 {
                return;
            }
            let doubled = 2 * error;
            if doubled >= dy {
                error += dy;
                x += sx;
            }
            if doubled <= dx {
                error += dx;
                y += sy;
            }
        }
    }

    /// `text` with its top left corner at (x, y), 8 pixels a character.
    fn text(&mut self, x: i64, y: i64, text: &str, color: Rgb) {
        for (index, c) in text.chars().enumerate() {
            let Some(glyph) = font8x8::legacy::BASIC_LEGACY.get(c as usize) else {
                continue;
            };
            for (row, bits) in glyph.iter().enumerate() {
                for column in 0..8 {
                    if bits & (1 << column) != 0 {
                        self.set(x + index as i64 * 8 + column, y + row as i64, color);
                    }
                }
            }
        }
    }
}

/// One panel: its series over the hours, each with its colour and name.
struct Panel<'a> {
    title: &'a str,
    series: Vec<(&'a str, Rgb, Vec<Option<f64>>)>,
    /// Shown as percentages, on a fixed scale of 0 to 100%.
    percent: bool,
}

pub fn write(path: &Path, hours: &[Hour], days: u32, bands: &[Band]) -> anyhow::Result<()> {
    let mut canvas = Canvas::new();
    let count = |f: fn(&Hour) -> u64| -> Vec<Option<f64>> {
        hours.iter().map(|hour| Some(f(hour) as f64)).collect()
    };
    let panels = [
        Panel {
            title: "codes sent per hour",
            series: vec![
                ("legitimate", BLUE, count(|hour| hour.legitimate_sent)),
                ("attacks", RED, count(|hour| hour.attack_sent)),
            ],
            percent: false,
        },
        Panel {
            title: "codes refused per hour (blocks)",
            series: vec![
                ("legitimate", ORANGE, count(|hour| hour.legitimate_refused)),
                ("attacks", RED, count(|hour| hour.attack_refused)),
            ],
            percent: false,
        },
        Panel {
            title: "conversion per hour",
            series: vec![
                (
                    "legitimate users approved",
                    GREEN,
                    hours.iter().map(Hour::legitimate_conversion).collect(),
                ),
                (
                    "approved per code sent, all traffic",
                    GREY,
                    hours.iter().map(Hour::conversion).collect(),
                ),
            ],
            percent: true,
        },
    ];
    let span_hours = f64::from(days * 24);
    let plot_width = (WIDTH - LEFT - RIGHT) as f64;
    let x_of = |hour: f64| LEFT as i64 + (hour / span_hours * plot_width).round() as i64;

    let top_of_panels = TIMELINE_TOP + bands.len() * LANE + GAP / 2;
    for (lane, band) in bands.iter().enumerate() {
        let y = (TIMELINE_TOP + lane * LANE) as i64;
        let color = if band.attack { RED } else { GREEN };
        let (x0, x1) = (
            x_of(band.from_hour),
            x_of(band.to_hour).max(x_of(band.from_hour) + 2),
        );
        canvas.rect(
            x0,
            y + 2,
            x1,
            y + 9,
            if band.attack { ATTACK_BAND } else { SURGE_BAND },
        );
        canvas.rect(x0, y + 2, x0, y + 9, color);
        canvas.rect(x1, y + 2, x1, y + 9, color);
        canvas.text(8, y + 2, &band.label, color);
    }
    for (index, panel) in panels.iter().enumerate() {
        let top = (top_of_panels + index * (PANEL_HEIGHT + GAP)) as i64;
        let bottom = top + PANEL_HEIGHT as i64;
        for band in bands {
            let color = if band.attack { ATTACK_BAND } else { SURGE_BAND };
            let (x0, x1) = (x_of(band.from_hour), x_of(band.to_hour));
            // Short events shaded across the panels too; a day-long one would hide the rest.
            if band.to_hour - band.from_hour <= 6.0 {
                canvas.rect(x0, top, x1.max(x0 + 2), bottom, color);
            }
        }
        for day in 0..=days {
            let x = x_of(f64::from(day * 24));
            canvas.rect(x, top, x, bottom, GRID);
            if day < days {
                canvas.text(x + 4, bottom + 6, &format!("day {}", day + 1), BLACK);
            }
        }
        let max = if panel.percent {
            1.0
        } else {
            panel
                .series
                .iter()
                .flat_map(|(_, _, values)| values.iter().flatten())
                .fold(1.0_f64, |max, value| max.max(*value))
                * 1.1
        };
        let y_of = |value: f64| bottom - (value / max * PANEL_HEIGHT as f64).round() as i64;
        for fraction in [0.25, 0.5, 0.75] {
            let y = y_of(max * fraction);
            canvas.rect(LEFT as i64, y, (WIDTH - RIGHT) as i64, y, GRID);
        }
        let label = |value: f64| {
            if panel.percent {
                format!("{:.0}%", value * 100.0)
            } else {
                format!("{value:.0}")
            }
        };
        canvas.text(8, top - 4, &label(max), BLACK);
        canvas.text(8, y_of(max / 2.0) - 4, &label(max / 2.0), BLACK);
        canvas.text(8, bottom - 8, &label(0.0), BLACK);
        canvas.rect(LEFT as i64, top, LEFT as i64, bottom, BLACK);
        canvas.rect(LEFT as i64, bottom, (WIDTH - RIGHT) as i64, bottom, BLACK);
        canvas.text(LEFT as i64 + 8, top + 6, panel.title, BLACK);
        let mut legend_x = (WIDTH - RIGHT) as i64 - 8;
        for (name, color, _) in panel.series.iter().rev() {
            legend_x -= (name.len() as i64 + 4) * 8;
            canvas.rect(legend_x, top + 9, legend_x + 14, top + 11, *color);
            canvas.text(legend_x + 20, top + 6, name, *color);
        }
        for (_, color, values) in &panel.series {
            let mut previous: Option<(i64, i64)> = None;
            for (hour, value) in values.iter().enumerate().take(days as usize * 24) {
                let point = value.map(|value| (x_of(hour as f64 + 0.5), y_of(value)));
                if let (Some(from), Some(to)) = (previous, point) {
                    canvas.line(from, to, *color);
                }
                previous = point;
            }
        }
    }
    canvas.text(
        LEFT as i64,
        (HEIGHT - 20) as i64,
        "top: when each attack (red) and the legitimate surge (green) ran, shaded below when short; hours in UTC",
        GREY,
    );

    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), WIDTH as u32, HEIGHT as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut writer| writer.write_image_data(&canvas.pixels))
        .with_context(|| format!("cannot write {}", path.display()))
}
