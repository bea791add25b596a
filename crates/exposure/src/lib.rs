//! Designated-vendor exposure (DESIGN.md §6): for each rule of a policy, the designated vendor's
//! share of the rule's scope (by device count or by weight), the cap and the date it takes
//! effect, whether the network complies at a given date, and the smallest set of the vendor's
//! devices whose replacement brings the share within the cap, with what that costs; a sweep of
//! the cap shows the price of each level of restriction. No I/O: the binary reads the files.
//!
//! The minimal replacement set is the one with the fewest devices. Replacing a device keeps it
//! in the network (another vendor's equipment takes its place), so the scope's total does not
//! change and the vendor's part falls by what the device counted. With `measure = "devices"`
//! every device counts one: any `k` of them will do, and the cheapest `k` are taken. With
//! `measure = "weight"` the heaviest go first (no set of fewer devices can remove as much), and
//! among devices of equal weight the cheaper first.

pub mod chart;
pub mod date;
pub mod html;
pub mod policy;

pub use date::Date;
pub use policy::{DateError, Measure, Policy, PolicyError, Rule, Scope};

use nospy_inventory::{Device, Inventory};
use std::collections::HashMap;

/// A set of devices to replace.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Replacement {
    /// Indexes of the devices (in the inventory), in the order chosen.
    pub devices: Vec<usize>,
    /// What they count for under the rule's measure.
    pub amount: f64,
    /// Their total weight.
    pub weight: f64,
    /// Their total replacement cost.
    pub cost: f64,
    /// The vendor's share once they are replaced.
    pub share_after: f64,
}

/// One rule judged at a date.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleReport {
    /// The rule.
    pub rule: Rule,
    /// Devices in the scope.
    pub scope_devices: usize,
    /// The scope's total under the rule's measure.
    pub total: f64,
    /// The vendor's devices in the scope.
    pub vendor_devices: usize,
    /// The vendor's part under the rule's measure.
    pub amount: f64,
    /// `amount / total` (0 for an empty scope).
    pub share: f64,
    /// Whether the cap is in effect at the date judged.
    pub in_force: bool,
    /// Whether the share is within the cap (whether or not it is in force yet).
    pub compliant: bool,
    /// Days from the date judged to the date the cap takes effect (negative once in force).
    pub days_to_effective: i64,
    /// Every vendor's part of the scope, largest first (for the charts).
    pub vendors: Vec<(String, f64)>,
    /// The fewest devices whose replacement brings the share within the cap (empty when it is).
    pub replacement: Replacement,
    /// The cap sweep asked for: what each cap would take.
    pub what_if: Vec<WhatIf>,
}

impl RuleReport {
    /// In breach: the cap is in force and the share is over it.
    pub fn breach(&self) -> bool {
        self.in_force && !self.compliant
    }
}

/// Whether `amount` of `total` is within `cap`, with a tolerance for the rounding of sums of
/// weights (a share equal to the cap complies).
fn within(amount: f64, total: f64, cap: f64) -> bool {
    amount <= cap * total + 1e-9 * total.max(1.0)
}

/// The devices of `vendor` in `scope`, and the scope's total and the vendor's part.
struct ScopeView {
    members: usize,
    total: f64,
    vendor: Vec<usize>,
    amount: f64,
    by_vendor: Vec<(String, f64)>,
}

fn view(inv: &Inventory, rule: &Rule) -> ScopeView {
    let mut members = 0;
    let mut total = 0.0;
    let mut vendor = Vec::new();
    let mut amount = 0.0;
    let mut by_vendor: HashMap<&str, f64> = HashMap::new();
    for (i, d) in inv.devices.iter().enumerate() {
        if !rule.scope.contains(d) {
            continue;
        }
        let m = rule.measure.of(d);
        members += 1;
        total += m;
        match by_vendor.get_mut(d.vendor.as_str()) {
            Some(x) => *x += m,
            None => {
                by_vendor.insert(&d.vendor, m);
            }
        }
        if d.vendor == rule.vendor {
            vendor.push(i);
            amount += m;
        }
    }
    ScopeView {
        members,
        total,
        vendor,
        amount,
        by_vendor: by_vendor
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    }
}

/// The order in which devices are replaced: cheapest first when each counts one, heaviest
/// first (of equal weight, the cheaper) when each counts its weight.
fn replacement_order(devices: &[Device], candidates: &[usize], measure: Measure) -> Vec<usize> {
    let mut order: Vec<usize> = candidates.to_vec();
    match measure {
        Measure::Devices => order.sort_by(|&a, &b| {
            let (x, y) = (&devices[a], &devices[b]);
            x.replacement_cost
                .total_cmp(&y.replacement_cost)
                .then(x.device.cmp(&y.device))
        }),
        Measure::Weight => order.sort_by(|&a, &b| {
            let (x, y) = (&devices[a], &devices[b]);
            y.weight
                .total_cmp(&x.weight)
                .then(x.replacement_cost.total_cmp(&y.replacement_cost))
                .then(x.device.cmp(&y.device))
        }),
    }
    order
}

/// Takes devices in `order` until `amount` of `total` is within `cap`.
fn take_until(
    devices: &[Device],
    order: &[usize],
    measure: Measure,
    amount: f64,
    total: f64,
    cap: f64,
) -> Replacement {
    let share = |a: f64| if total > 0.0 { a / total } else { 0.0 };
    let mut r = Replacement {
        share_after: share(amount),
        ..Replacement::default()
    };
    let mut left = amount;
    for &i in order {
        if within(left, total, cap) {
            break;
        }
        let d = &devices[i];
        let m = measure.of(d);
        if m <= 0.0 {
            // Counts for nothing: replacing it cannot help (only zero-weight devices remain).
            break;
        }
        left -= m;
        r.devices.push(i);
        r.amount += m;
        r.weight += d.weight;
        r.cost += d.replacement_cost;
    }
    r.share_after = share(left.max(0.0));
    r
}

/// The fewest of `candidates` (the vendor's devices in the scope) whose replacement brings
/// `amount` of `total` within `cap`.
pub fn minimal_replacement(
    devices: &[Device],
    candidates: &[usize],
    measure: Measure,
    amount: f64,
    total: f64,
    cap: f64,
) -> Replacement {
    if within(amount, total, cap) {
        return take_until(devices, &[], measure, amount, total, cap);
    }
    let order = replacement_order(devices, candidates, measure);
    take_until(devices, &order, measure, amount, total, cap)
}

/// Judges every rule of `policy` on `inv` at date `at`, and sweeps each rule's cap over `caps`
/// (none: no sweep): each rule's scope is read once, its devices put in replacement order once.
pub fn evaluate(inv: &Inventory, policy: &Policy, at: Date, caps: &[f64]) -> Vec<RuleReport> {
    policy
        .rules
        .iter()
        .map(|rule| judge(inv, rule, at, caps))
        .collect()
}

fn judge(inv: &Inventory, rule: &Rule, at: Date, caps: &[f64]) -> RuleReport {
    let v = view(inv, rule);
    let share = if v.total > 0.0 {
        v.amount / v.total
    } else {
        0.0
    };
    let compliant = within(v.amount, v.total, rule.max_share);
    // Ordered only when some cap needs devices replaced.
    let order = if compliant && caps.is_empty() {
        Vec::new()
    } else {
        replacement_order(&inv.devices, &v.vendor, rule.measure)
    };
    let take = |cap: f64| take_until(&inv.devices, &order, rule.measure, v.amount, v.total, cap);
    let replacement = take(rule.max_share);
    let what_if = caps
        .iter()
        .map(|&cap| WhatIf {
            cap,
            replacement: take(cap),
        })
        .collect();
    let mut vendors = v.by_vendor;
    vendors.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    RuleReport {
        scope_devices: v.members,
        total: v.total,
        vendor_devices: v.vendor.len(),
        amount: v.amount,
        share,
        in_force: at >= rule.effective,
        compliant,
        days_to_effective: rule.effective.0 - at.0,
        vendors,
        replacement,
        what_if,
        rule: rule.clone(),
    }
}

/// One level of a cap sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct WhatIf {
    /// The cap tried.
    pub cap: f64,
    /// What it would take.
    pub replacement: Replacement,
}

/// What each of `caps` would take, for `rule`'s vendor and scope: the fewest devices to replace
/// and their cost.
pub fn what_if(inv: &Inventory, rule: &Rule, caps: &[f64]) -> Vec<WhatIf> {
    judge(inv, rule, Date(0), caps).what_if
}
