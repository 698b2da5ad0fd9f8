use super::*;
use shardmesh_gossip::Member;

fn member(pod: &str, service: &str, health: Health, tags: &[(&str, &str)]) -> Member {
    Member {
        meta: MemberMeta {
            service: service.into(),
            pod: pod.into(),
            inbound: format!("127.0.0.1:{}", 7000 + pod.len()),
            admin: String::new(),
            zone: None,
            state: MemberStatus::Serving,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
        incarnation: 1,
        health,
        gossip_addr: "127.0.0.1:7946".parse().unwrap(),
    }
}

fn config() -> SidecarConfig {
    SidecarConfig::from_yaml(
        "pod: { name: bank-0, service: bank }\nservices:\n  - { name: bank, shards: 12 }\n",
    )
    .unwrap()
}

fn view(members: Vec<Member>) -> MembershipView {
    let mut members = members;
    members.sort_by(|a, b| a.meta.pod.cmp(&b.meta.pod));
    MembershipView {
        members,
        local: "bank-0".into(),
    }
}

#[test]
fn dead_and_left_members_leave_the_table_suspects_keep_shards() {
    let v = view(vec![
        member("bank-0", "bank", Health::Alive, &[]),
        member("bank-1", "bank", Health::Suspect, &[]),
        member("bank-2", "bank", Health::Dead, &[]),
        member("bank-3", "bank", Health::Left, &[]),
    ]);
    let t = table_from_view(&config(), &v, 7);
    let bank = t.service("bank").unwrap();
    let names: Vec<&str> = bank.endpoints.iter().map(|e| &*e.name).collect();
    assert_eq!(names, ["bank-0", "bank-1"]);
    assert_eq!(bank.endpoints[1].health, EndpointHealth::Suspect);
    assert_eq!(bank.owned_by("bank-0"), 6);
    assert_eq!(bank.owned_by("bank-1"), 6, "a suspect keeps its shards");
    assert_eq!(t.version, 7);
}

#[test]
fn services_without_config_are_learned_from_tags() {
    let v = view(vec![
        member("bank-0", "bank", Health::Alive, &[]),
        member(
            "carts-0",
            "carts",
            Health::Alive,
            &[("shards", "8"), ("keyFromPath", "/carts/{key}")],
        ),
        member("junk-0", "junk", Health::Alive, &[("shards", "nope")]),
        member("huge-0", "huge", Health::Alive, &[("shards", "99999999")]),
    ]);
    let t = table_from_view(&config(), &v, 1);
    let carts = t.service("carts").unwrap();
    assert_eq!(carts.shards, 8);
    assert_eq!(
        carts.key_from_path.as_ref().unwrap().to_string(),
        "/carts/{key}"
    );
    assert_eq!(carts.owned_by("carts-0"), 8);
    assert!(t.service("junk").is_none());
    assert!(t.service("huge").is_none());
}

#[test]
fn local_meta_carries_routing_tags() {
    let mut c = config();
    c.services[0].routing.key_from_path = Some("/accounts/{key}".into());
    let meta = local_meta(
        &c,
        "10.0.0.1:7401".parse().unwrap(),
        "10.0.0.1:7402".parse().unwrap(),
    );
    assert_eq!(meta.tags.get(TAG_SHARDS).map(String::as_str), Some("12"));
    assert_eq!(
        meta.tags.get(TAG_KEY_FROM_PATH).map(String::as_str),
        Some("/accounts/{key}")
    );
    assert!(!meta.tags.contains_key(TAG_KEY_HEADER));
    assert!(meta.validate().is_ok());
}

#[test]
fn advertise_needs_a_specific_address() {
    let mut c = config();
    let any: SocketAddr = "0.0.0.0:7401".parse().unwrap();
    assert!(advertised(&c, any).is_err());
    c.pod.advertise_host = Some("10.1.2.3".into());
    assert_eq!(
        advertised(&c, any).unwrap(),
        "10.1.2.3:7401".parse().unwrap()
    );
    c.pod.advertise_host = Some("not-an-ip".into());
    assert!(advertised(&c, any).is_err());
}

#[test]
fn a_leaving_member_stays_reachable_but_owns_no_shards() {
    let mut leaving = member("bank-2", "bank", Health::Alive, &[]);
    leaving.meta.state = MemberStatus::Leaving;
    let v = view(vec![
        member("bank-0", "bank", Health::Alive, &[]),
        member("bank-1", "bank", Health::Alive, &[]),
        leaving,
    ]);
    let t = table_from_view(&config(), &v, 1);
    let bank = t.service("bank").unwrap();
    let names: Vec<&str> = bank.endpoints.iter().map(|e| &*e.name).collect();
    assert_eq!(names, ["bank-0", "bank-1", "bank-2"]);
    assert_eq!(bank.endpoints[2].health, EndpointHealth::Suspect);
    assert_eq!(bank.owned_by("bank-2"), 0);
    assert_eq!(bank.owned_by("bank-0") + bank.owned_by("bank-1"), 12);
    // The same owners as a view without it.
    let two = table_from_view(
        &config(),
        &view(vec![
            member("bank-0", "bank", Health::Alive, &[]),
            member("bank-1", "bank", Health::Alive, &[]),
        ]),
        1,
    );
    let two = two.service("bank").unwrap();
    for s in 0..12 {
        assert_eq!(
            bank.owner(s).map(|(e, _)| e.name.clone()),
            two.owner(s).map(|(e, _)| e.name.clone())
        );
    }
}
