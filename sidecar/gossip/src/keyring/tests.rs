use super::*;

fn ring(keys: &[u8]) -> Keyring {
    let raw: Vec<[u8; 32]> = keys.iter().map(|b| [*b; 32]).collect();
    Keyring::new(&raw).unwrap()
}

#[test]
fn seal_then_open_round_trips() {
    let k = ring(&[1]);
    let sealed = k.seal(Channel::Udp, b"hello");
    assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
    assert_eq!(k.open(Channel::Udp, &sealed).unwrap(), b"hello");
}

#[test]
fn wrong_key_is_refused() {
    let sealed = ring(&[1]).seal(Channel::Udp, b"hello");
    assert_eq!(ring(&[2]).open(Channel::Udp, &sealed), Err(OpenError::Auth));
}

#[test]
fn udp_packet_does_not_open_as_tcp_frame() {
    let k = ring(&[1]);
    let sealed = k.seal(Channel::Udp, b"hello");
    assert_eq!(k.open(Channel::Tcp, &sealed), Err(OpenError::Auth));
}

#[test]
fn truncated_version_and_flipped_bits_are_refused() {
    let k = ring(&[1]);
    let sealed = k.seal(Channel::Udp, b"hello");
    assert_eq!(
        k.open(Channel::Udp, &sealed[..10]),
        Err(OpenError::Truncated)
    );
    assert_eq!(k.open(Channel::Udp, &[]), Err(OpenError::Truncated));
    let mut bad = sealed.clone();
    bad[0] = 9;
    assert_eq!(k.open(Channel::Udp, &bad), Err(OpenError::Version));
    let mut flipped = sealed;
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(k.open(Channel::Udp, &flipped), Err(OpenError::Auth));
}

#[test]
fn rotation_primary_seals_all_keys_open() {
    let old = ring(&[1]);
    let both = ring(&[2, 1]);
    let new_only = ring(&[2]);
    // A member still on the old key talks to one that holds both.
    assert!(both
        .open(Channel::Udp, &old.seal(Channel::Udp, b"a"))
        .is_ok());
    // The rotated member seals with the new primary; old-only members refuse it,
    // members on the new key accept it.
    let sealed = both.seal(Channel::Udp, b"b");
    assert_eq!(old.open(Channel::Udp, &sealed), Err(OpenError::Auth));
    assert!(new_only.open(Channel::Udp, &sealed).is_ok());
}

#[test]
fn nonces_differ_between_seals() {
    let k = ring(&[1]);
    assert_ne!(k.seal(Channel::Udp, b"x"), k.seal(Channel::Udp, b"x"));
}

#[test]
fn parses_file_format_and_rejects_bad_lines() {
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let text = format!("# primary\n{key}\n\n{key}\n");
    assert_eq!(Keyring::parse(&text).unwrap().len(), 2);
    assert!(matches!(
        Keyring::parse("# none\n"),
        Err(KeyringError::Empty)
    ));
    assert!(matches!(
        Keyring::parse("c2hvcnQ=\n"),
        Err(KeyringError::BadKey { line: 1 })
    ));
    assert!(matches!(
        Keyring::parse("!!!\n"),
        Err(KeyringError::BadKey { line: 1 })
    ));
    let many = format!("{key}\n").repeat(MAX_KEYS + 1);
    assert!(matches!(
        Keyring::parse(&many),
        Err(KeyringError::TooManyKeys)
    ));
}

#[test]
fn debug_never_prints_keys() {
    assert_eq!(format!("{:?}", ring(&[1, 2])), "Keyring(2 keys)");
}

#[test]
fn no_keyring_refuses_unless_insecure_dev_mode() {
    assert!(matches!(
        Keyring::configured(None, false),
        Err(KeyringError::NotConfigured)
    ));
    assert_eq!(Keyring::configured(None, true).unwrap().len(), 1);
    assert!(matches!(
        Keyring::configured(Some(Path::new("/nonexistent/keyring")), true),
        Err(KeyringError::Read { .. })
    ));
}
