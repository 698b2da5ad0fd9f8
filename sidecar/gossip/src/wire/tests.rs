use super::*;
use crate::keyring::{Channel, Keyring};

fn id(port: u16) -> NodeId {
    NodeId {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        generation: 7,
    }
}

#[test]
fn swim_round_trips() {
    let msg = Wire::Swim {
        buddy: Some(3),
        packet: vec![1, 2, 3],
    };
    assert_eq!(decode::<Wire>(&encode(&msg), MAX_PLAIN), Ok(msg));
}

#[test]
fn push_pull_round_trips() {
    let pp = PushPull {
        from: id(1),
        members: vec![foca::Member::alive(id(2))],
        digests: vec![MetaDigest {
            addr: id(2).addr,
            generation: 7,
            version: 4,
        }],
        metas: vec![MetaRecord {
            id: id(2),
            version: 4,
            left: false,
            meta: MemberMeta {
                pod: "bank-0".into(),
                ..MemberMeta::default()
            },
        }],
    };
    assert_eq!(decode::<PushPull>(&encode(&pp), MAX_FRAME), Ok(pp));
}

#[test]
fn wrong_version_truncated_oversized_and_trailing_are_refused() {
    let mut bytes = encode(&Wire::Nack { target: id(1) });
    assert_eq!(decode::<Wire>(&[], MAX_PLAIN), Err(BadPacket::Truncated));
    assert_eq!(
        decode::<Wire>(&bytes[..bytes.len() - 1], MAX_PLAIN),
        Err(BadPacket::Truncated)
    );
    assert_eq!(decode::<Wire>(&bytes, 3), Err(BadPacket::Oversized));
    bytes.push(0);
    assert_eq!(decode::<Wire>(&bytes, MAX_PLAIN), Err(BadPacket::Malformed));
    bytes[0] = 2;
    assert_eq!(decode::<Wire>(&bytes, MAX_PLAIN), Err(BadPacket::Version));
}

#[test]
fn garbage_never_panics() {
    // Deterministic pseudo-random garbage, every length up to a datagram.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..MAX_PLAIN {
        let buf: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut versioned = buf.clone();
        if let Some(b) = versioned.first_mut() {
            *b = WIRE_VERSION;
        }
        let _ = decode::<Wire>(&buf, MAX_PLAIN);
        let _ = decode::<Wire>(&versioned, MAX_PLAIN);
        let _ = decode::<PushPull>(&versioned, MAX_FRAME);
        let _ = decode_item(&buf);
    }
}

#[test]
fn huge_length_prefix_does_not_allocate_unbounded() {
    // A Vec length of u32::MAX as a varint, followed by nothing.
    let evil = [WIRE_VERSION, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f];
    assert!(decode::<Wire>(&evil, MAX_PLAIN).is_err());
    assert!(decode::<PushPull>(&evil, MAX_FRAME).is_err());
}

#[test]
fn sealed_garbage_with_right_key_is_malformed_not_panic() {
    let k = Keyring::new(&[[1; 32]]).unwrap();
    let sealed = k.seal(Channel::Udp, &[WIRE_VERSION, 0x7f]);
    let plain = k.open(Channel::Udp, &sealed).unwrap();
    assert_eq!(decode::<Wire>(&plain, MAX_PLAIN), Err(BadPacket::Malformed));
}

#[test]
fn bad_packet_labels_are_stable() {
    let labels: Vec<_> = [
        BadPacket::Oversized,
        BadPacket::Truncated,
        BadPacket::Version,
        BadPacket::Auth,
        BadPacket::Malformed,
    ]
    .iter()
    .map(|b| b.as_str())
    .collect();
    assert_eq!(
        labels,
        ["oversized", "truncated", "version", "auth", "malformed"]
    );
}
