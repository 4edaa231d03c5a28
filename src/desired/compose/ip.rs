//! IP addresses and subnets as Compose files write them (`172.28.5.0/24`, `fd00::1`).

use std::net::IpAddr;

pub(super) fn parse_address(text: &str) -> Option<IpAddr> {
    text.parse().ok()
}

/// `address/prefix`, with a prefix that fits the address family.
pub(super) fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (address, prefix) = text.split_once('/')?;
    let address: IpAddr = address.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let bits = if address.is_ipv4() { 32 } else { 128 };
    (prefix <= bits).then_some((address, prefix))
}

/// Whether `address` lies in the subnet `cidr` (both of one family).
pub(super) fn subnet_contains(cidr: &str, address: &str) -> bool {
    let (Some((net, prefix)), Some(addr)) = (parse_cidr(cidr), parse_address(address)) else {
        return false;
    };
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_hold_the_addresses_of_their_family_and_prefix() {
        assert!(subnet_contains("172.31.7.0/24", "172.31.7.10"));
        assert!(!subnet_contains("172.31.7.0/24", "172.31.8.10"));
        assert!(subnet_contains("0.0.0.0/0", "10.1.2.3"));
        assert!(subnet_contains("fd00:7::/64", "fd00:7::10"));
        assert!(!subnet_contains("fd00:7::/64", "172.31.7.10"));
        assert!(parse_cidr("172.31.7.0/33").is_none());
        assert!(parse_cidr("172.31.7.0").is_none());
        assert!(parse_address("172.31.7.300").is_none());
    }
}
