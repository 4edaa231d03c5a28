//! The order services start in, from `depends_on`.

use super::model::Service;
use std::collections::{BTreeMap, BTreeSet};

/// Services sorted so that each comes after everything it depends on; ties by name, so the order
/// is stable. On a cycle, returns it as a path that ends where it starts (`a -> b -> a`).
pub fn startup_order(services: &BTreeMap<String, Service>) -> Result<Vec<String>, Vec<String>> {
    // Kahn's algorithm with the ready set kept sorted: the first ready name goes first, as a
    // person would order them, in O(n log n) (a file may hold thousands of services).
    let mut waiting_on: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, service) in services {
        let known: BTreeSet<&str> = service
            .depends_on
            .keys()
            .map(String::as_str)
            .filter(|d| services.contains_key(*d))
            .collect();
        for dep in &known {
            dependents.entry(dep).or_default().push(name);
        }
        waiting_on.insert(name, known.len());
    }
    let mut ready: BTreeSet<&str> = waiting_on
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(name, _)| *name)
        .collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::new();
    while let Some(name) = ready.pop_first() {
        done.insert(name);
        order.push(name.to_string());
        for dependent in dependents.get(name).into_iter().flatten() {
            let left = waiting_on
                .get_mut(dependent)
                .expect("every service is counted");
            *left -= 1;
            if *left == 0 {
                ready.insert(dependent);
            }
        }
    }
    if order.len() < services.len() {
        return Err(cycle(services, &done));
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
