//! The exposure report as one self-contained HTML file: no script, no external resource; the
//! charts are inline SVG (each scope's vendor shares against its cap, and the share against the
//! cap over time across the deadlines), so that the file opens anywhere and prints as it shows.

use crate::{Date, RuleReport, WhatIf};
use nospy_inventory::Inventory;
use std::fmt::Write as _;

/// Escapes text for HTML.
fn esc(s: &str) -> String {
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

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn money(x: f64) -> String {
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

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#1b1f24;max-width:72rem}\
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2.5rem}table{border-collapse:collapse;margin:1rem 0}\
td,th{border-bottom:1px solid #d0d7de;padding:.35rem .7rem;text-align:left;vertical-align:top}\
th{background:#f6f8fa}.num{text-align:right;font-variant-numeric:tabular-nums}\
.breach{color:#b42318;font-weight:600}.ok{color:#1a7f37}.later{color:#9a6700}\
figure{margin:1rem 0}figcaption{font-size:.9rem;color:#57606a}svg text{font-family:system-ui,sans-serif;font-size:12px}";

fn status(r: &RuleReport) -> (&'static str, &'static str) {
    match (r.in_force, r.compliant) {
        (true, true) => ("compliant", "ok"),
        (true, false) => ("in breach", "breach"),
        (false, true) => ("not yet in force; within the cap", "ok"),
        (false, false) => ("not yet in force; over the cap", "later"),
    }
}

/// Horizontal bars: each vendor's share of the scope, the designated vendor highlighted, the cap
/// a vertical line.
fn shares_chart(r: &RuleReport, id: usize) -> String {
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
        r#"<svg class="chart shares" id="shares-{id}" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg"><title>{} share of {}</title>"#,
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
fn timeline_chart(r: &RuleReport, id: usize, at: Date, from: Date, to: Date) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 220.0, 50.0, 20.0, 20.0, 40.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let span = (to.0 - from.0).max(1) as f64;
    let x = |d: Date| left + ((d.0 - from.0) as f64 / span).clamp(0.0, 1.0) * pw;
    let y = |share: f64| top + (1.0 - share.clamp(0.0, 1.0)) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart timeline" id="timeline-{id}" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg"><title>{} share of {} against its cap over time</title>"#,
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
fn what_if_chart(r: &RuleReport, id: usize, sweep: &[WhatIf]) -> String {
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
        r#"<svg class="chart whatif" id="whatif-{id}" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg"><title>cost of each cap for {} in {}</title>"#,
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

/// The whole report (with each rule's cap sweep, if it was asked for).
pub fn report(inv: &Inventory, rules: &[RuleReport], at: Date) -> String {
    let mut from = at;
    let mut to = at;
    for r in rules {
        from = from.min(r.rule.effective);
        to = to.max(r.rule.effective);
    }
    let (from, to) = (Date(from.0 - 365), Date(to.0 + 365));
    let breaches = rules.iter().filter(|r| r.breach()).count();
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>nospy exposure at {at}</title><style>{STYLE}</style></head><body><h1>Designated-vendor exposure at {at}</h1><p>{} devices in the inventory; {} rules, <span class=\"{}\">{breaches} in breach</span>.</p>",
        inv.devices.len(),
        rules.len(),
        if breaches > 0 { "breach" } else { "ok" }
    );
    s.push_str("<table id=\"rules\"><tr><th>rule</th><th>vendor</th><th>scope</th><th class=\"num\">share</th><th class=\"num\">cap</th><th>effective</th><th>status</th><th class=\"num\">to replace</th><th class=\"num\">cost</th></tr>");
    for r in rules {
        let (word, class) = status(r);
        let when = if r.days_to_effective > 0 {
            format!("{} (in {} days)", r.rule.effective, r.days_to_effective)
        } else {
            r.rule.effective.to_string()
        };
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{when}</td><td class=\"{class}\">{word}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&r.rule.name),
            esc(&r.rule.vendor),
            esc(&r.rule.scope.to_string()),
            pct(r.share),
            pct(r.rule.max_share),
            r.replacement.devices.len(),
            money(r.replacement.cost)
        );
    }
    s.push_str("</table>");
    for (i, r) in rules.iter().enumerate() {
        let (word, class) = status(r);
        let _ = write!(
            s,
            "<section class=\"rule\"><h2>{}</h2><p>{} in {}: {} by {} ({} of {} devices); cap {} from {}: <span class=\"{class}\">{word}</span>.",
            esc(&r.rule.name),
            esc(&r.rule.vendor),
            esc(&r.rule.scope.to_string()),
            pct(r.share),
            match r.rule.measure {
                crate::Measure::Weight => "weight",
                crate::Measure::Devices => "device count",
            },
            r.vendor_devices,
            r.scope_devices,
            pct(r.rule.max_share),
            r.rule.effective
        );
        if !r.replacement.devices.is_empty() {
            let _ = write!(
                s,
                " Replacing {} devices (weight {:.1}, cost {}) brings the share to {}.",
                r.replacement.devices.len(),
                r.replacement.weight,
                money(r.replacement.cost),
                pct(r.replacement.share_after)
            );
        }
        if let Some(n) = &r.rule.note {
            let _ = write!(s, " <em>{}</em>", esc(n));
        }
        s.push_str("</p>");
        let _ = write!(
            s,
            "<figure>{}<figcaption>Each vendor's share of the scope; the dashed line is the cap.</figcaption></figure>",
            shares_chart(r, i)
        );
        let _ = write!(
            s,
            "<figure>{}<figcaption>The share (solid) against the cap (dashed) over time; dotted, the share once the minimal set is replaced; the grey line is {at}.</figcaption></figure>",
            timeline_chart(r, i, at, from, to)
        );
        if !r.what_if.is_empty() {
            let sweep = &r.what_if;
            let _ = write!(
                s,
                "<figure>{}<figcaption>What each cap would cost to reach (replacement cost of the fewest devices).</figcaption></figure><table class=\"whatif\"><tr><th class=\"num\">cap</th><th class=\"num\">devices</th><th class=\"num\">weight</th><th class=\"num\">cost</th><th class=\"num\">share after</th></tr>",
                what_if_chart(r, i, sweep)
            );
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
            s.push_str("</table>");
        }
        if !r.replacement.devices.is_empty() {
            s.push_str("<details><summary>The devices to replace</summary><table><tr><th>device</th><th>site</th><th>function</th><th class=\"num\">weight</th><th class=\"num\">cost</th></tr>");
            for &d in r.replacement.devices.iter().take(1000) {
                let dev = &inv.devices[d];
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{:.2}</td><td class=\"num\">{}</td></tr>",
                    esc(&dev.device),
                    esc(&dev.site),
                    dev.function.as_str(),
                    dev.weight,
                    money(dev.replacement_cost)
                );
            }
            if r.replacement.devices.len() > 1000 {
                let _ = write!(
                    s,
                    "<tr><td colspan=\"5\">and {} more (see --json)</td></tr>",
                    r.replacement.devices.len() - 1000
                );
            }
            s.push_str("</table></details>");
        }
        s.push_str("</section>");
    }
    s.push_str("</body></html>\n");
    s
}
