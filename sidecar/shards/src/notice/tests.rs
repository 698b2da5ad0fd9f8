use proptest::prelude::*;

use super::*;

fn sample() -> ReleaseNotice {
    ReleaseNotice {
        service: "bank".into(),
        shard: 7,
        epoch: 42,
        from: MemberId::new("bank-2"),
        to: 0x0102_0304_0506_0708,
    }
}

#[test]
fn round_trips() {
    let n = sample();
    let bytes = n.encode().unwrap();
    assert_eq!(ReleaseNotice::decode(&bytes), Ok(n));
}

#[test]
fn wire_format_is_pinned() {
    let bytes = sample().encode().unwrap();
    let mut want = vec![b'R', 2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 42];
    want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 4]);
    want.extend_from_slice(b"bank");
    want.push(6);
    want.extend_from_slice(b"bank-2");
    assert_eq!(bytes, want);
}

#[test]
fn version_1_notices_are_read_as_released_to_nobody() {
    let mut v1 = vec![b'R', 1, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 42, 4];
    v1.extend_from_slice(b"bank");
    v1.push(6);
    v1.extend_from_slice(b"bank-2");
    let mut want = sample();
    want.to = 0;
    assert_eq!(ReleaseNotice::decode(&v1), Ok(want));
}

#[test]
fn rejects_garbage_with_a_reason() {
    let good = sample().encode().unwrap();
    assert_eq!(ReleaseNotice::decode(&[]), Err(NoticeError::Truncated));
    assert_eq!(
        ReleaseNotice::decode(&good[..good.len() - 1]),
        Err(NoticeError::Truncated)
    );
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(ReleaseNotice::decode(&trailing), Err(NoticeError::TooLong));
    let mut magic = good.clone();
    magic[0] = b'X';
    assert_eq!(
        ReleaseNotice::decode(&magic),
        Err(NoticeError::BadMagic(b'X'))
    );
    let mut version = good.clone();
    version[1] = 9;
    assert_eq!(
        ReleaseNotice::decode(&version),
        Err(NoticeError::BadVersion(9))
    );
    let mut empty_service = good.clone();
    empty_service[22] = 0;
    assert_eq!(
        ReleaseNotice::decode(&empty_service),
        Err(NoticeError::BadField("service"))
    );
    let mut bad_utf8 = good.clone();
    bad_utf8[23] = 0xff;
    assert_eq!(
        ReleaseNotice::decode(&bad_utf8),
        Err(NoticeError::BadField("service"))
    );
    assert_eq!(
        ReleaseNotice::decode(&vec![b'R'; MAX_NOTICE_LEN + 1]),
        Err(NoticeError::TooLong)
    );
}

#[test]
fn refuses_to_encode_oversized_names() {
    let mut n = sample();
    n.service = "s".repeat(MAX_SERVICE_LEN + 1);
    assert_eq!(n.encode(), Err(NoticeError::BadField("service")));
    let mut n = sample();
    n.from = MemberId::new("");
    assert_eq!(n.encode(), Err(NoticeError::BadField("from")));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = ReleaseNotice::decode(&bytes);
    }

    #[test]
    fn valid_notices_round_trip_within_bound(
        service in "[a-z][a-z0-9-]{0,62}",
        from in "[a-z][a-z0-9.-]{0,252}",
        shard in any::<u32>(),
        epoch in any::<u64>(),
        to in any::<u64>(),
    ) {
        let n = ReleaseNotice { service, shard, epoch, from: MemberId::new(from), to };
        let bytes = n.encode().unwrap();
        prop_assert!(bytes.len() <= MAX_NOTICE_LEN);
        prop_assert_eq!(ReleaseNotice::decode(&bytes), Ok(n));
    }
}
