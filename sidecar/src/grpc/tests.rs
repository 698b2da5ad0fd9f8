use super::*;

fn hv(s: &'static str) -> HeaderValue {
    HeaderValue::from_static(s)
}

#[test]
fn recognises_grpc_content_types_only() {
    let mut h = HeaderMap::new();
    for (ct, grpc) in [
        ("application/grpc", true),
        ("application/grpc+proto", true),
        ("application/grpc;charset=utf-8", true),
        ("application/grpc-web", false),
        ("application/json", false),
    ] {
        h.insert(header::CONTENT_TYPE, hv(ct));
        assert_eq!(is_grpc(&h), grpc, "{ct}");
    }
    assert!(!is_grpc(&HeaderMap::new()));
}

#[test]
fn parses_grpc_timeout_units_and_refuses_bad_values() {
    assert_eq!(parse_timeout(&hv("1H")), Some(Duration::from_secs(3600)));
    assert_eq!(parse_timeout(&hv("2M")), Some(Duration::from_secs(120)));
    assert_eq!(parse_timeout(&hv("3S")), Some(Duration::from_secs(3)));
    assert_eq!(parse_timeout(&hv("250m")), Some(Duration::from_millis(250)));
    assert_eq!(
        parse_timeout(&hv("1500u")),
        Some(Duration::from_micros(1500))
    );
    assert_eq!(
        parse_timeout(&hv("99999999n")),
        Some(Duration::from_nanos(99_999_999))
    );
    for bad in ["", "m", "123456789m", "10x", "-1m", "1.5S", "10 m"] {
        assert_eq!(
            parse_timeout(&HeaderValue::from_str(bad).unwrap()),
            None,
            "{bad:?}"
        );
    }
}

#[test]
fn grpc_timeout_becomes_the_mesh_deadline_rounded_up_and_capped() {
    let mut h = HeaderMap::new();
    h.insert(GRPC_TIMEOUT, hv("1500u"));
    deadline_from_grpc_timeout(&mut h);
    assert_eq!(h[TIMEOUT_HEADER], "2");

    let mut h = HeaderMap::new();
    h.insert(GRPC_TIMEOUT, hv("99999999H"));
    deadline_from_grpc_timeout(&mut h);
    assert_eq!(h[TIMEOUT_HEADER], MAX_TIMEOUT_MS.to_string().as_str());

    let mut h = HeaderMap::new();
    h.insert(GRPC_TIMEOUT, hv("0n"));
    deadline_from_grpc_timeout(&mut h);
    assert_eq!(h[TIMEOUT_HEADER], "1");

    // A little under the app's own timer: a twentieth, at most 20 ms.
    for (timeout, deadline) in [
        ("100m", "95"),
        ("300m", "285"),
        ("5S", "4980"),
        ("19m", "19"),
    ] {
        let mut h = HeaderMap::new();
        h.insert(GRPC_TIMEOUT, hv(timeout));
        deadline_from_grpc_timeout(&mut h);
        assert_eq!(h[TIMEOUT_HEADER], deadline, "{timeout}");
    }

    // The mesh header wins; a bad value leaves the route default.
    let mut h = HeaderMap::new();
    h.insert(GRPC_TIMEOUT, hv("5S"));
    h.insert(TIMEOUT_HEADER, hv("700"));
    deadline_from_grpc_timeout(&mut h);
    assert_eq!(h[TIMEOUT_HEADER], "700");
    let mut h = HeaderMap::new();
    h.insert(GRPC_TIMEOUT, hv("soon"));
    deadline_from_grpc_timeout(&mut h);
    assert!(!h.contains_key(TIMEOUT_HEADER));
}

#[test]
fn the_remaining_budget_is_forwarded_in_grpc_timeout() {
    let mut h = HeaderMap::new();
    h.insert(GRPC_TIMEOUT, hv("5S"));
    h.insert(TIMEOUT_HEADER, hv("4321"));
    to_app(&mut h);
    assert_eq!(h[GRPC_TIMEOUT], "4321m");
    assert_eq!(h[header::TE], "trailers");
}

#[tokio::test]
async fn mesh_failures_become_trailers_only_statuses() {
    let local = hv("tally-0");
    for (reason, code) in [
        (Reason::Overloaded, "8"),
        (Reason::CircuitOpen, "14"),
        (Reason::NoOwner, "14"),
        (Reason::Unavailable, "14"),
        (Reason::Timeout, "4"),
        (Reason::UnknownService, "12"),
        (Reason::BadRequest, "3"),
    ] {
        let rsp = crate::reason::MeshFailure::new(reason, "why 100%").into_response(&local);
        let rsp = answer(rsp).await;
        assert_eq!(rsp.status(), StatusCode::OK);
        let h = rsp.headers();
        assert_eq!(h[GRPC_STATUS], code, "{reason:?}");
        assert_eq!(h[header::CONTENT_TYPE], "application/grpc");
        assert_eq!(h[headers::ERROR], reason.as_str());
        assert_eq!(h[headers::SERVED_BY], "tally-0");
        assert_eq!(
            h[GRPC_MESSAGE].to_str().unwrap(),
            format!("{}: why 100%25", reason.as_str())
        );
        assert!(rsp.into_body().is_end_stream());
    }
}

#[tokio::test]
async fn app_answers_pass_untouched() {
    let mut rsp = Response::new(crate::body::full("x"));
    *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let rsp = answer(rsp).await;
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!rsp.headers().contains_key(GRPC_STATUS));
}

#[test]
fn percent_encodes_non_printable_bytes() {
    assert_eq!(percent_encode("a b%c\n\u{e9}"), "a b%25c%0A%C3%A9");
}
