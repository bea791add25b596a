//! The exposure charts, as inline SVG: each rule's vendor shares against its cap, its share
//! against the cap over time across the deadlines, and the cost of each cap of a sweep. One
//! module for every place that draws them: `nospy exposure --html` and the dashboard's exposure
//! page. Each chart has an accessible name (its `<title>`, referenced by `aria-labelledby`) and
//! a data table with the same figures ([`shares_table`], [`timeline_table`]; the sweep's table
//! is [`what_if_table`]). Colours are SVG presentation attributes, not style: the charts render
//! under a Content-Security-Policy that forbids inline style.

use crate::{Date, RuleReport, WhatIf};
use std::fmt::Write as _;

/// Escapes text for HTML (and SVG).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A share as a percentage with one decimal.
pub fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// An amount, rounded, with thousands separators.
pub fn money(x: f64) -> String {
    let whole = x.round() as i64;
    let s = whole.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if whole < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// A rule's standing in words, and the class that colours it (`ok`, `breach`, `later`).
pub fn status(r: &RuleReport) -> (&'static str, &'static str) {
    match (r.in_force, r.compliant) {
        (true, true) => ("compliant", "ok"),
        (true, false) => ("in breach", "breach"),
        (false, true) => ("not yet in force; within the cap", "ok"),
        (false, false) => ("not yet in force; over the cap", "later"),
    }
}

/// Horizontal bars: each vendor's share of the scope, the designated vendor highlighted, the cap
/// a vertical line.
pub fn shares(r: &RuleReport, id: usize) -> String {
    let mut rows: Vec<(String, f64)> = r.vendors.iter().take(8).cloned().collect();
    let shown: f64 = rows.iter().map(|v| v.1).sum();
    if r.vendors.len() > 8 {
        rows.push((format!("{} others", r.vendors.len() - 8), r.total - shown));
    }
    let (w, left, bar, gap) = (640.0, 170.0, 22.0, 8.0);
    let plot = w - left - 70.0;
    let h = 40.0 + rows.len().max(1) as f64 * (bar + gap);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart shares" id="shares-{id}" role="img" aria-labelledby="shares-{id}-title" width="{w}" height="{h}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg"><title id="shares-{id}-title">{} share of {}</title>"#,
        esc(&r.rule.vendor),
        esc(&r.rule.scope.to_string())
    );
    for (k, (vendor, amount)) in rows.iter().enumerate() {
        let share = if r.total > 0.0 { amount / r.total } else { 0.0 };
        let y = 20.0 + k as f64 * (bar + gap);
        let designated = *vendor == r.rule.vendor;
        let fill = match (designated, r.compliant) {
            (true, false) => "#d1242f",
            (true, true) => "#1f883d",
            _ => "#8c959f",
        };
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect class="bar" x="{left}" y="{y}" width="{:.2}" height="{bar}" fill="{fill}"><title>{}: {}</title></rect><text x="{:.2}" y="{}">{}</text>"#,
            left - 8.0,
            y + bar * 0.7,
            esc(vendor),
            (share * plot).max(0.5),
            esc(vendor),
            pct(share),
            left + share * plot + 6.0,
            y + bar * 0.7,
            pct(share)
        );
    }
    let x = left + r.rule.max_share * plot;
    let _ = write!(
        s,
        "<line class=\"cap\" x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"12\" y2=\"{:.2}\" stroke=\"#0969da\" stroke-width=\"2\" stroke-dasharray=\"5 3\"/><text x=\"{x:.2}\" y=\"10\" fill=\"#0969da\">cap {}</text></svg>",
        h - 6.0,
        pct(r.rule.max_share)
    );
    s
}

/// The share against the cap over time: the cap steps down on the day it takes effect; the
/// share is today's (and, dashed, the share once the minimal set is replaced); the date judged
/// is marked.
pub fn timeline(r: &RuleReport, id: usize, at: Date, from: Date, to: Date) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 220.0, 62.0, 20.0, 20.0, 40.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let span = (to.0 - from.0).max(1) as f64;
    let x = |d: Date| left + ((d.0 - from.0) as f64 / span).clamp(0.0, 1.0) * pw;
    let y = |share: f64| top + (1.0 - share.clamp(0.0, 1.0)) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart timeline" id="timeline-{id}" role="img" aria-labelledby="timeline-{id}-title" width="{w}" height="{h}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg"><title id="timeline-{id}-title">{} share of {} against its cap over time</title>"#,
        esc(&r.rule.vendor),
        esc(&r.rule.scope.to_string())
    );
    for t in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{:.2}\" y1=\"{:.2}\" y2=\"{:.2}\" stroke=\"#eaeef2\"/><text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\">{}</text>",
            left + pw,
            y(t),
            y(t),
            left - 6.0,
            y(t) + 4.0,
            pct(t)
        );
    }
    // Years along the bottom.
    let year = |d: Date| d.ymd().map_or(0, |(y, _, _)| y);
    let (y0, y1) = (year(from), year(to));
    for year in y0..=y1 + 1 {
        if let Ok(d) = Date::parse(&format!("{year:04}-01-01")) {
            if d >= from && d <= to {
                let _ = write!(
                    s,
                    "<line x1=\"{0:.2}\" x2=\"{0:.2}\" y1=\"{top}\" y2=\"{1:.2}\" stroke=\"#eaeef2\"/><text x=\"{0:.2}\" y=\"{2:.2}\" text-anchor=\"middle\">{year}</text>",
                    x(d),
                    top + ph,
                    h - bottom + 16.0
                );
            }
        }
    }
    // Over the cap while it is in force: shaded.
    let eff = r.rule.effective.max(from);
    if r.share > r.rule.max_share && eff < to {
        let _ = write!(
            s,
            "<rect class=\"over\" x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"#ffebe9\"><title>over the cap</title></rect>",
            x(eff),
            y(r.share),
            x(to) - x(eff),
            y(r.rule.max_share) - y(r.share)
        );
    }
    // The cap: none (100%) before it takes effect, then the cap.
    let _ = write!(
        s,
        "<polyline class=\"cap\" fill=\"none\" stroke=\"#0969da\" stroke-width=\"2\" stroke-dasharray=\"5 3\" points=\"{:.2},{:.2} {:.2},{:.2} {:.2},{:.2} {:.2},{:.2}\"><title>cap {} from {}</title></polyline>",
        x(from), y(1.0), x(eff), y(1.0), x(eff), y(r.rule.max_share), x(to), y(r.rule.max_share),
        pct(r.rule.max_share),
        r.rule.effective
    );
    let color = if r.compliant { "#1f883d" } else { "#d1242f" };
    let _ = write!(
        s,
        "<line class=\"share\" x1=\"{:.2}\" x2=\"{:.2}\" y1=\"{:.2}\" y2=\"{:.2}\" stroke=\"{color}\" stroke-width=\"3\"><title>share today {}</title></line>",
        x(from),
        x(to),
        y(r.share),
        y(r.share),
        pct(r.share)
    );
    if !r.replacement.devices.is_empty() {
        let _ = write!(
            s,
            "<line class=\"after\" x1=\"{:.2}\" x2=\"{:.2}\" y1=\"{:.2}\" y2=\"{:.2}\" stroke=\"#1f883d\" stroke-width=\"2\" stroke-dasharray=\"2 3\"><title>share after replacing {} devices: {}</title></line>",
            x(at.max(from)),
            x(to),
            y(r.replacement.share_after),
            y(r.replacement.share_after),
            r.replacement.devices.len(),
            pct(r.replacement.share_after)
        );
    }
    let _ = write!(
        s,
        "<line class=\"today\" x1=\"{0:.2}\" x2=\"{0:.2}\" y1=\"{top}\" y2=\"{1:.2}\" stroke=\"#57606a\"/><text x=\"{0:.2}\" y=\"{2:.2}\" text-anchor=\"middle\" fill=\"#57606a\">{at}</text></svg>",
        x(at),
        top + ph,
        top - 6.0
    );
    s
}

/// The cost of each cap of a sweep, as a line.
pub fn what_if(r: &RuleReport, id: usize, sweep: &[WhatIf]) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 220.0, 90.0, 20.0, 20.0, 40.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let max_cost = sweep
        .iter()
        .map(|s| s.replacement.cost)
        .fold(0.0f64, f64::max)
        .max(1.0);
    let max_cap = sweep.iter().map(|s| s.cap).fold(0.0f64, f64::max).max(0.01);
    let x = |c: f64| left + (c / max_cap) * pw;
    let y = |v: f64| top + (1.0 - v / max_cost) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart whatif" id="whatif-{id}" role="img" aria-labelledby="whatif-{id}-title" width="{w}" height="{h}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg"><title id="whatif-{id}-title">cost of each cap for {} in {}</title>"#,
        esc(&r.rule.vendor),
        esc(&r.rule.scope.to_string())
    );
    for t in [0.0, 0.5, 1.0] {
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{:.2}\" y1=\"{:.2}\" y2=\"{:.2}\" stroke=\"#eaeef2\"/><text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\">{}</text>",
            left + pw,
            y(t * max_cost),
            y(t * max_cost),
            left - 6.0,
            y(t * max_cost) + 4.0,
            money(t * max_cost)
        );
    }
    let points: Vec<String> = sweep
        .iter()
        .map(|p| format!("{:.2},{:.2}", x(p.cap), y(p.replacement.cost)))
        .collect();
    let _ = write!(
        s,
        "<polyline class=\"cost\" fill=\"none\" stroke=\"#8250df\" stroke-width=\"2\" points=\"{}\"/>",
        points.join(" ")
    );
    for p in sweep {
        let _ = write!(
            s,
            "<circle class=\"point\" cx=\"{:.2}\" cy=\"{:.2}\" r=\"3.5\" fill=\"#8250df\"><title>cap {}: {} devices, cost {}</title></circle><text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"middle\">{}</text>",
            x(p.cap),
            y(p.replacement.cost),
            pct(p.cap),
            p.replacement.devices.len(),
            money(p.replacement.cost),
            x(p.cap),
            h - bottom + 16.0,
            pct(p.cap)
        );
    }
    s.push_str("</svg>");
    s
}

/// The dates a report's timelines span: a year before the earliest of `at` and the rules'
/// effective dates to a year after the latest.
pub fn span(rules: &[RuleReport], at: Date) -> (Date, Date) {
    let mut from = at;
    let mut to = at;
    for r in rules {
        from = from.min(r.rule.effective);
        to = to.max(r.rule.effective);
    }
    (Date(from.0 - 365), Date(to.0 + 365))
}

/// The shares chart's figures as a table: each vendor's part and share of the scope.
pub fn shares_table(r: &RuleReport) -> String {
    let mut s = format!(
        "<table class=\"data\"><caption>Each vendor's share of {} (the cap: {})</caption><thead><tr><th scope=\"col\">vendor</th><th scope=\"col\" class=\"num\">{}</th><th scope=\"col\" class=\"num\">share</th></tr></thead><tbody>",
        esc(&r.rule.scope.to_string()),
        pct(r.rule.max_share),
        match r.rule.measure {
            crate::Measure::Weight => "weight",
            crate::Measure::Devices => "devices",
        }
    );
    for (vendor, amount) in &r.vendors {
        let share = if r.total > 0.0 { amount / r.total } else { 0.0 };
        let _ = write!(
            s,
            "<tr><th scope=\"row\">{}</th><td class=\"num\">{amount:.1}</td><td class=\"num\">{}</td></tr>",
            esc(vendor),
            pct(share)
        );
    }
    s.push_str("</tbody></table>");
    s
}

/// The timeline's figures as a table: the cap before and from its effective date, the share
/// today and once the minimal set is replaced.
pub fn timeline_table(r: &RuleReport, at: Date) -> String {
    let mut s = format!(
        "<table class=\"data\"><caption>{} share of {} against its cap</caption><thead><tr><th scope=\"col\">from</th><th scope=\"col\" class=\"num\">cap</th><th scope=\"col\" class=\"num\">share</th></tr></thead><tbody>",
        esc(&r.rule.vendor),
        esc(&r.rule.scope.to_string())
    );
    let _ = write!(
        s,
        "<tr><th scope=\"row\">{at} (judged)</th><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
        if r.in_force { pct(r.rule.max_share) } else { "none yet".into() },
        pct(r.share)
    );
    if !r.in_force {
        let _ = write!(
            s,
            "<tr><th scope=\"row\">{}</th><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            r.rule.effective,
            pct(r.rule.max_share),
            pct(r.share)
        );
    }
    if !r.replacement.devices.is_empty() {
        let _ = write!(
            s,
            "<tr><th scope=\"row\">after replacing {} devices</th><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            r.replacement.devices.len(),
            pct(r.rule.max_share),
            pct(r.replacement.share_after)
        );
    }
    s.push_str("</tbody></table>");
    s
}

/// The sweep's figures as a table: for each cap, the devices to replace and what it costs.
pub fn what_if_table(sweep: &[WhatIf]) -> String {
    let mut s = String::from("<table class=\"whatif data\"><caption>What each cap would take</caption><thead><tr><th scope=\"col\" class=\"num\">cap</th><th scope=\"col\" class=\"num\">devices</th><th scope=\"col\" class=\"num\">weight</th><th scope=\"col\" class=\"num\">cost</th><th scope=\"col\" class=\"num\">share after</th></tr></thead><tbody>");
    for p in sweep {
        let _ = write!(
            s,
            "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            pct(p.cap),
            p.replacement.devices.len(),
            p.replacement.weight,
            money(p.replacement.cost),
            pct(p.replacement.share_after)
        );
    }
    s.push_str("</tbody></table>");
    s
}
