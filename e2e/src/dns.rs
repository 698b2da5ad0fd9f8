//! A tiny DNS client (one A query over UDP, RFC 1035): the Kubernetes
//! suites ask the cluster DNS (CoreDNS behind the `kube-dns` ClusterIP)
//! exactly what a pod's resolver would, and see the response code and every
//! address, without a resolver library or `dig` on the machine.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// Response code NXDOMAIN: the name does not exist.
pub const NXDOMAIN: u8 = 3;

/// What the server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// RCODE: 0 no error, 3 NXDOMAIN, 2 SERVFAIL, ...
    pub rcode: u8,
    /// The A records of the answer section, sorted.
    pub addrs: Vec<Ipv4Addr>,
}

/// Asks `server` for the A records of `name` (a fully qualified name,
/// without the trailing dot).
pub fn query_a(server: SocketAddr, name: &str, timeout: Duration) -> Result<Answer, String> {
    let id = (std::process::id() as u16) ^ (name.len() as u16).rotate_left(8);
    let packet = encode_query(id, name)?;
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("bind: {e}"))?;
    sock.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    sock.send_to(&packet, server)
        .map_err(|e| format!("send to {server}: {e}"))?;
    let mut buf = [0u8; 4096];
    loop {
        let (n, from) = sock
            .recv_from(&mut buf)
            .map_err(|e| format!("no answer from {server} for {name}: {e}"))?;
        if from == server && n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            return decode_answer(&buf[..n]);
        }
    }
}

/// A query for `name`, type A, class IN, recursion desired.
fn encode_query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut p = Vec::with_capacity(512);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("bad DNS name {name:?}"));
        }
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&[0, 1, 0, 1]);
    Ok(p)
}

/// The RCODE and A records of a response.
fn decode_answer(msg: &[u8]) -> Result<Answer, String> {
    let short = || "truncated DNS response".to_string();
    if msg.len() < 12 {
        return Err(short());
    }
    let rcode = msg[3] & 0x0f;
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(msg, at).ok_or_else(short)? + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..an {
        at = skip_name(msg, at).ok_or_else(short)?;
        let fixed = msg.get(at..at + 10).ok_or_else(short)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let len = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let data = msg.get(at + 10..at + 10 + len).ok_or_else(short)?;
        if rtype == 1 && len == 4 {
            addrs.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    addrs.sort();
    Ok(Answer { rcode, addrs })
}

/// The offset after the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + l as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_labels() {
        let q = encode_query(7, "a.bc").unwrap();
        assert_eq!(&q[..2], &[0, 7]);
        assert_eq!(&q[12..], &[1, b'a', 2, b'b', b'c', 0, 0, 1, 0, 1]);
        assert!(encode_query(1, "a..b").is_err());
    }

    #[test]
    fn decodes_compressed_answers() {
        let mut m = encode_query(9, "x.y").unwrap();
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 2; // two answers
        for last in [20u8, 10] {
            m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 244, 0, last]);
        }
        let a = decode_answer(&m).unwrap();
        assert_eq!(a.rcode, 0);
        assert_eq!(
            a.addrs,
            vec![Ipv4Addr::new(10, 244, 0, 10), Ipv4Addr::new(10, 244, 0, 20)]
        );
        m[3] = 0x83;
        m[7] = 0;
        m.truncate(21);
        assert_eq!(decode_answer(&m).unwrap().rcode, NXDOMAIN);
        assert!(decode_answer(&m[..5]).is_err());
    }
}
