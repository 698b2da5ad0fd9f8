//! Before a pod starts: are its addresses free? A runner left behind by an
//! earlier `local up` (or anything else) holding a pod's port used to make
//! every app crash-loop on "Address already in use" while the table only
//! said `crashed`. Now the runner refuses to start and names the address
//! and, where Linux tells, the process holding it.
//!
//! Finding the holder is hand-written: no well-kept crate maps a socket to
//! its process (`lsof`/`ss` do it the same way: `/proc/net/{tcp,udp}` gives
//! the socket's inode, `/proc/PID/fd` links name `socket:[INODE]`).

use std::net::{SocketAddr, SocketAddrV4, TcpListener, UdpSocket};

use super::plan::PodPlan;

/// Which socket of a pod an address is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
}

/// The addresses a pod binds: the app port and the sidecar's listeners
/// (gossip on TCP and UDP).
fn pod_addrs(plan: &PodPlan) -> Vec<(String, Proto)> {
    let l = &plan.sidecar.listeners;
    vec![
        (plan.sidecar.app.address.clone(), Proto::Tcp),
        (l.outbound.clone(), Proto::Tcp),
        (l.inbound.clone(), Proto::Tcp),
        (l.admin.clone(), Proto::Tcp),
        (l.gossip.clone(), Proto::Tcp),
        (l.gossip.clone(), Proto::Udp),
    ]
}

/// Checks that every address of `plan` can be bound now (pods in network
/// namespaces are skipped: the namespace is the caller's and fresh).
/// The error names the address and, when found, the process holding it.
pub fn check_free(plan: &PodPlan) -> Result<(), String> {
    if plan.net.netns.is_some() {
        return Ok(());
    }
    for (addr, proto) in pod_addrs(plan) {
        let Ok(sa) = addr.parse::<SocketAddr>() else {
            continue;
        };
        let taken = match proto {
            Proto::Tcp => TcpListener::bind(sa).err(),
            Proto::Udp => UdpSocket::bind(sa).err(),
        };
        let Some(e) = taken.filter(|e| e.kind() == std::io::ErrorKind::AddrInUse) else {
            continue;
        };
        let proto_name = if proto == Proto::Tcp { "tcp" } else { "udp" };
        let who = match sa {
            SocketAddr::V4(v4) => holder(v4, proto),
            SocketAddr::V6(_) => None,
        };
        let who = who.map_or_else(
            || "a process this user cannot see".to_string(),
            |(pid, cmd)| format!("pid {pid} ({cmd})"),
        );
        return Err(format!(
            "pod {}: {proto_name} address {addr} is already in use by {who}: {e}; \
             stop the other run (is an earlier `local up` still running?) or pass \
             --loopback-block N to use other addresses",
            plan.name
        ));
    }
    Ok(())
}

/// The process holding `addr` (pid and command line), from `/proc`.
fn holder(addr: SocketAddrV4, proto: Proto) -> Option<(u32, String)> {
    let table = match proto {
        Proto::Tcp => "/proc/net/tcp",
        Proto::Udp => "/proc/net/udp",
    };
    let text = std::fs::read_to_string(table).ok()?;
    let inode = socket_inode(&text, addr)?;
    let target = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str())
        });
        if holds {
            let cmd = std::fs::read(entry.path().join("cmdline"))
                .map(|b| {
                    b.split(|c| *c == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            return Some((pid, cmd));
        }
    }
    None
}

/// The inode of the socket bound to `addr` in a `/proc/net/{tcp,udp}` table
/// (`local_address` is `HEXIP:HEXPORT`, the IP in host byte order).
fn socket_inode(table: &str, addr: SocketAddrV4) -> Option<u64> {
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(addr.ip().octets()),
        addr.port()
    );
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1)? == &want.as_str())
            .then(|| fields.get(9)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_inode_of_a_bound_address() {
        // /proc/net/tcp as Linux writes it (little-endian host: 127.0.0.10
        // is 0A00007F); one header line, then one socket per line.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0A00007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 424242 1 0000000000000000 100 0 0 10 0\n";
        let addr: SocketAddrV4 = "127.0.0.10:8080".parse().unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(socket_inode(table, addr), Some(424242));
        }
        let other: SocketAddrV4 = "127.0.0.11:8080".parse().unwrap();
        assert_eq!(socket_inode(table, other), None);
        assert_eq!(socket_inode("garbage", addr), None);
    }

    #[test]
    fn names_the_process_holding_a_taken_port() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(addr) = held.local_addr().unwrap() else {
            panic!("v4");
        };
        let (pid, cmd) = holder(addr, Proto::Tcp).expect("this test process holds it");
        assert_eq!(pid, std::process::id());
        assert!(!cmd.is_empty());
    }
}
