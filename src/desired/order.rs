//! The order services start in, from `depends_on`.

use super::model::Service;
use std::collections::{BTreeMap, BTreeSet};

/// Services sorted so that each comes after everything it depends on; ties by name, so the order
/// is stable. On a cycle, returns it as a path that ends where it starts (`a -> b -> a`).
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
            None => return Err(cycle(services, &done)),
        }
    }
    Ok(order)
}

/// A cycle among the services left unordered. Each of them waits on another one left (else it
/// would be ready), so following those waits from any of them must come back to one already seen;
/// services that only wait on the cycle are not named.
fn cycle(services: &BTreeMap<String, Service>, done: &BTreeSet<&str>) -> Vec<String> {
    let left = |name: &str| !done.contains(name) && services.contains_key(name);
    let mut path: Vec<String> = services
        .keys()
        .filter(|n| left(n))
        .take(1)
        .cloned()
        .collect();
    while let Some(last) = path.last() {
        let Some(next) = services[last].depends_on.keys().find(|d| left(d)) else {
            break;
        };
        if let Some(start) = path.iter().position(|p| p == next) {
            let mut cycle = path.split_off(start);
            cycle.push(next.clone());
            return cycle;
        }
        path.push(next.clone());
    }
    path
}
