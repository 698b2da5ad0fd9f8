//! Pod addresses from the node's pod CIDR: handed out round-robin (a freed
//! address is not reused at once, so stale connections and DNS caches do not
//! reach a new pod) and freed when a pod's sandbox goes.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// The allocator of one pod CIDR.
#[derive(Debug)]
pub struct Ipam {
    network: u32,
    prefix: u8,
    gateway: u32,
    used: BTreeSet<u32>,
    /// Where the next search starts (round-robin).
    next: u32,
}

impl Ipam {
    /// An allocator for `cidr` (`a.b.c.d/len`, len 8..=30) whose `gateway` is never handed out.
    pub fn new(cidr: &str, gateway: Ipv4Addr) -> Result<Self, String> {
        let (addr, len) = cidr
            .split_once('/')
            .ok_or_else(|| format!("pod CIDR {cidr}: expected a.b.c.d/len"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|e| format!("pod CIDR {cidr}: {e}"))?;
        let prefix: u8 = len.parse().map_err(|e| format!("pod CIDR {cidr}: {e}"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("pod CIDR {cidr}: prefix must be 8..=30"));
        }
        let mask = u32::MAX << (32 - prefix);
        let network = u32::from(addr) & mask;
        let gw = u32::from(gateway);
        if gw & mask != network {
            return Err(format!("gateway {gateway} is outside the pod CIDR {cidr}"));
        }
        Ok(Self {
            network,
            prefix,
            gateway: gw,
            used: BTreeSet::new(),
            next: 1,
        })
    }

    /// The prefix length (for `ip addr add IP/len`).
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    fn usable(&self, offset: u32) -> bool {
        offset != 0 && offset != self.size() - 1 && self.network + offset != self.gateway
    }

    /// A free address: `prefer` when it is free and in the CIDR (a pod the
    /// agent ran before keeps its address), else the next free one.
    pub fn allocate(&mut self, prefer: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        if let Some(ip) = prefer {
            let raw = u32::from(ip);
            let offset = raw.wrapping_sub(self.network);
            if offset < self.size() && self.usable(offset) && self.used.insert(raw) {
                return Some(ip);
            }
        }
        let size = self.size();
        for i in 0..size {
            let offset = (self.next + i) % size;
            let raw = self.network + offset;
            if self.usable(offset) && !self.used.contains(&raw) {
                self.used.insert(raw);
                self.next = (offset + 1) % size;
                return Some(Ipv4Addr::from(raw));
            }
        }
        None
    }

    /// Frees `ip` (a no-op for an address not handed out).
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&u32::from(ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_network_gateway_and_broadcast_and_does_not_reuse_at_once() {
        let mut ipam = Ipam::new("10.1.0.0/30", Ipv4Addr::new(10, 1, 0, 1)).unwrap();
        assert_eq!(ipam.allocate(None), Some(Ipv4Addr::new(10, 1, 0, 2)));
        assert_eq!(ipam.allocate(None), None);
        let mut ipam = Ipam::new("10.244.0.0/24", Ipv4Addr::new(10, 244, 0, 1)).unwrap();
        let a = ipam.allocate(None).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 244, 0, 2));
        ipam.release(a);
        assert_eq!(ipam.allocate(None), Some(Ipv4Addr::new(10, 244, 0, 3)));
        assert_eq!(ipam.allocate(Some(a)), Some(a), "a free preferred address");
        assert_ne!(ipam.allocate(Some(a)), Some(a), "taken: another one");
        assert_ne!(
            ipam.allocate(Some(Ipv4Addr::new(10, 9, 0, 5))),
            Some(Ipv4Addr::new(10, 9, 0, 5))
        );
    }

    #[test]
    fn rejects_a_gateway_outside() {
        assert!(Ipam::new("10.244.0.0/24", Ipv4Addr::new(10, 9, 0, 1)).is_err());
    }
}
