//! A resolver snapshot the operator supplies: names to addresses, for DNS-name rules when the
//! traffic carries no DNS.

use nospy_flow::fasthash::FastMap;
use std::net::IpAddr;

/// Names to addresses, as the operator's resolver answered (a snapshot file).
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    pub(crate) by_addr: FastMap<IpAddr, Vec<String>>,
}

impl Resolver {
    /// Reads a snapshot: one name per line followed by its addresses, separated by spaces or
    /// commas (`use1-api.tplinkra.com 52.209.43.100 52.213.21.82`); `#` starts a comment. Errors
    /// name the line.
    pub fn parse(text: &str) -> Result<Resolver, crate::SetupError> {
        use crate::SetupError as E;
        let mut r = Resolver::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|p| !p.is_empty());
            let name = parts.next().unwrap_or_default();
            let name = nospy_manifest::dns_name(name).map_err(|e| E::ResolverName {
                line: i + 1,
                problem: e.to_string(),
            })?;
            let mut any = false;
            for a in parts {
                let addr: IpAddr = a.parse().map_err(|_| E::ResolverAddress {
                    line: i + 1,
                    text: a.to_string(),
                })?;
                r.by_addr.entry(addr).or_default().push(name.clone());
                any = true;
            }
            if !any {
                return Err(E::ResolverNoAddress { line: i + 1, name });
            }
        }
        Ok(r)
    }
}
