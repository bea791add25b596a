//! The operator's network, which gives a manifest's abstractions their addresses.

use nospy_manifest::Prefix;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `operator.toml` (DESIGN.md §12).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorConfig {
    /// `operator-networks`.
    pub operator_networks: Vec<Prefix>,
    /// `local-networks`.
    pub local_networks: Vec<Prefix>,
    /// `my-controller`.
    pub my_controller: Vec<Prefix>,
    /// `controller:<uri>`: MUD controller classes (URNs, URLs) to addresses.
    pub controllers: BTreeMap<String, Vec<Prefix>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    operator_networks: Vec<String>,
    #[serde(default)]
    local_networks: Vec<String>,
    #[serde(default)]
    my_controller: Vec<String>,
    #[serde(default)]
    controllers: BTreeMap<String, Vec<String>>,
}

fn prefixes(field: &str, v: &[String]) -> Result<Vec<Prefix>, String> {
    v.iter()
        .map(|s| s.parse::<Prefix>().map_err(|e| format!("{field}: {e}")))
        .collect()
}

impl OperatorConfig {
    /// Reads `operator.toml`; errors name the field.
    pub fn from_toml(text: &str) -> Result<OperatorConfig, crate::InventoryError> {
        Self::from_toml_text(text).map_err(|message| crate::InventoryError {
            place: "operator configuration".into(),
            message,
        })
    }

    fn from_toml_text(text: &str) -> Result<OperatorConfig, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut controllers = BTreeMap::new();
        for (uri, v) in &raw.controllers {
            controllers.insert(uri.clone(), prefixes(&format!("controllers.{uri:?}"), v)?);
        }
        Ok(OperatorConfig {
            operator_networks: prefixes("operator_networks", &raw.operator_networks)?,
            local_networks: prefixes("local_networks", &raw.local_networks)?,
            my_controller: prefixes("my_controller", &raw.my_controller)?,
            controllers,
        })
    }
}

impl OperatorConfig {
    /// The abstractions manifest `m` uses, resolved from these lists: what evidence about a
    /// device with that manifest records.
    pub fn resolutions(&self, m: &nospy_manifest::Manifest) -> nospy_manifest::judge::Resolutions {
        nospy_manifest::judge::resolutions_for(
            m,
            &self.operator_networks,
            &self.local_networks,
            &self.my_controller,
            &self.controllers,
        )
    }
}

impl From<nospy_manifest::judge::Resolutions> for OperatorConfig {
    /// The configuration that resolves exactly as recorded (what a capture is read again with).
    fn from(r: nospy_manifest::judge::Resolutions) -> OperatorConfig {
        OperatorConfig {
            operator_networks: r.operator_networks,
            local_networks: r.local_networks,
            my_controller: r.my_controller,
            controllers: r.controllers,
        }
    }
}
