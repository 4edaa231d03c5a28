//! The order services start in, from `depends_on`.

use super::model::Service;
use std::collections::{BTreeMap, BTreeSet};

/// Services sorted so that each comes after everything it depends on; ties by name, so the order
/// is stable. On a cycle, returns the services that form it.
pub fn startup_order(services: &BTreeMap<String, Service>) -> Result<Vec<String>, Vec<String>> {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::new();
    while order.len() < services.len() {
        let ready = services.iter().find(|(name, s)| {
            !done.contains(name.as_str())
                && s.depends_on
                    .keys()
                    .all(|d| done.contains(d.as_str()) || !services.contains_key(d))
        });
        match ready {
            Some((name, _)) => {
                done.insert(name);
                order.push(name.clone());
            }
            None => {
                let stuck = services
                    .keys()
                    .filter(|n| !done.contains(n.as_str()))
                    .cloned()
                    .collect();
                return Err(stuck);
            }
        }
    }
    Ok(order)
}
