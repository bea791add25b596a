//! The exposure report as one self-contained HTML file: no script, no external resource; the
//! charts ([`crate::chart`], the same the dashboard draws) are inline SVG, so that the file
//! opens anywhere and prints as it shows.

use crate::chart::{self, esc, money, pct, status};
use crate::{Date, RuleReport};
use nospy_inventory::Inventory;
use std::fmt::Write as _;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#1b1f24;max-width:72rem}\
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2.5rem}table{border-collapse:collapse;margin:1rem 0}\
td,th{border-bottom:1px solid #d0d7de;padding:.35rem .7rem;text-align:left;vertical-align:top}\
th{background:#f6f8fa}.num{text-align:right;font-variant-numeric:tabular-nums}\
.breach{color:#b42318;font-weight:600}.ok{color:#1a7f37}.later{color:#9a6700}\
figure{margin:1rem 0}figcaption{font-size:.9rem;color:#57606a}svg text{font-family:system-ui,sans-serif;font-size:12px}";

/// The whole report (with each rule's cap sweep, if it was asked for).
pub fn report(inv: &Inventory, rules: &[RuleReport], at: Date) -> String {
    let (from, to) = chart::span(rules, at);
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
            "<figure>{}<figcaption>Each vendor's share of the scope; the dashed line is the cap.</figcaption></figure><details><summary>The chart's figures</summary>{}</details>",
            chart::shares(r, i),
            chart::shares_table(r)
        );
        let _ = write!(
            s,
            "<figure>{}<figcaption>The share (solid) against the cap (dashed) over time; dotted, the share once the minimal set is replaced; the grey line is {at}.</figcaption></figure><details><summary>The chart's figures</summary>{}</details>",
            chart::timeline(r, i, at, from, to),
            chart::timeline_table(r, at)
        );
        if !r.what_if.is_empty() {
            let _ = write!(
                s,
                "<figure>{}<figcaption>What each cap would cost to reach (replacement cost of the fewest devices).</figcaption></figure>{}",
                chart::what_if(r, i, &r.what_if),
                chart::what_if_table(&r.what_if)
            );
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
