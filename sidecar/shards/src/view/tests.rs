use std::collections::BTreeMap;

use super::*;

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn tags_are_read_from_the_gossip_map() {
    let map = tags(&[(EPOCH_TAG, "42"), (SETTLED_TAG, "00000000000000ff")]);
    let p = Peer::new("bank-0", Health::Alive).with_tags(|k| map.get(k).map(String::as_str));
    assert_eq!(p.epoch, 42);
    assert_eq!(p.settled, Some(0xff));
}

#[test]
fn malformed_or_missing_tags_read_as_absent() {
    let map = tags(&[(EPOCH_TAG, "-1"), (SETTLED_TAG, "not-hex")]);
    let p = Peer::new("bank-0", Health::Alive).with_tags(|k| map.get(k).map(String::as_str));
    assert_eq!((p.epoch, p.settled), (0, None));
    let empty = tags(&[]);
    let p = Peer::new("bank-0", Health::Alive).with_tags(|k| empty.get(k).map(String::as_str));
    assert_eq!((p.epoch, p.settled), (0, None));
}

#[test]
fn view_id_round_trips_through_its_tag_format() {
    let id = view_id(&[MemberId::new("a"), MemberId::new("b")]);
    let text = format_view_id(id);
    assert_eq!(text.len(), 16);
    assert_eq!(u64::from_str_radix(&text, 16), Ok(id));
}

#[test]
fn view_id_separates_member_boundaries() {
    // "ab" + "c" must differ from "a" + "bc".
    let one = view_id(&[MemberId::new("ab"), MemberId::new("c")]);
    let two = view_id(&[MemberId::new("a"), MemberId::new("bc")]);
    assert_ne!(one, two);
}

#[test]
fn only_alive_and_suspect_members_own_shards() {
    assert!(Health::Alive.owns_shards());
    assert!(Health::Suspect.owns_shards());
    assert!(!Health::Dead.owns_shards());
    assert!(!Health::Left.owns_shards());
}
