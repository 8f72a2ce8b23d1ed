use super::*;

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 24 * HOUR;

fn names() -> Vec<String> {
    vec![
        "gw".into(),
        "gw.ns".into(),
        "gw.ns.svc".into(),
        "gw.ns.svc.cluster.local".into(),
        "*.gw-headless.ns.svc".into(),
    ]
}

fn lifetime() -> Lifetime {
    Lifetime {
        duration: 90 * DAY,
        renew_before: None,
    }
}

fn ca() -> Ca {
    Ca::generate("edgeway-ca ns", NOW, 3650 * DAY).expect("CA")
}

#[test]
fn server_leaf_chains_to_the_ca_and_carries_the_names() {
    let ca = ca();
    let leaf = ca
        .issue(
            "gw",
            &names(),
            Usage::Server,
            KeyAlgorithm::EcdsaP256,
            NOW,
            90 * DAY,
        )
        .unwrap();
    let der = pem_certs(&leaf.cert_pem).unwrap();
    let ca_der = pem_certs(&ca.cert_pem).unwrap();
    assert_eq!(
        der.len(),
        1,
        "tls.crt holds the leaf only (the CA is the root)"
    );
    assert!(verify_signed_by(&der[0], &ca_der[0]));
    let info = inspect(&leaf.cert_pem).unwrap();
    let mut want = names();
    want.sort();
    assert_eq!(info.dns_names, want);
    assert!(info.server_auth && !info.client_auth);
    assert!(key_matches(&leaf.cert_pem, &leaf.key_pem));
    assert_eq!(info.not_after, NOW + 90 * DAY);
}

#[test]
fn client_leaf_has_client_auth_usage_and_other_cas_do_not_verify_it() {
    let ca = ca();
    let other = Ca::generate("other", NOW, 10 * DAY).unwrap();
    let leaf = ca
        .issue(
            "gw-client",
            &[],
            Usage::Client,
            KeyAlgorithm::EcdsaP384,
            NOW,
            DAY,
        )
        .unwrap();
    let info = inspect(&leaf.cert_pem).unwrap();
    assert!(info.client_auth && !info.server_auth);
    assert!(ca.signed(&leaf.cert_pem));
    assert!(!other.signed(&leaf.cert_pem));
}

#[test]
fn leaf_never_outlives_the_ca() {
    let ca = Ca::generate("short", NOW, 10 * DAY).unwrap();
    let leaf = ca
        .issue(
            "gw",
            &names(),
            Usage::Server,
            KeyAlgorithm::EcdsaP256,
            NOW,
            90 * DAY,
        )
        .unwrap();
    assert_eq!(inspect(&leaf.cert_pem).unwrap().not_after, ca.not_after);
}

#[test]
fn renewal_is_at_two_thirds_unless_configured() {
    let l = lifetime();
    assert_eq!(l.renewal_time(0, 90 * DAY), 60 * DAY);
    let l = Lifetime {
        duration: 90 * DAY,
        renew_before: Some(10 * DAY),
    };
    assert_eq!(l.renewal_time(0, 90 * DAY), 80 * DAY);
    // A renewBefore longer than the lifetime renews at once, never before notBefore.
    let l = Lifetime {
        duration: DAY,
        renew_before: Some(10 * DAY),
    };
    assert_eq!(l.renewal_time(5, 5 + DAY), 5);
}

#[test]
fn decisions_keep_valid_certificates_and_renew_with_a_new_key() {
    let ca = ca();
    let n = names();
    assert_eq!(
        decide_leaf(None, &ca, &n, Usage::Server, lifetime(), NOW),
        LeafDecision::Issue("Missing")
    );
    let leaf = ca
        .issue(
            "gw",
            &n,
            Usage::Server,
            KeyAlgorithm::EcdsaP256,
            NOW,
            90 * DAY,
        )
        .unwrap();
    let existing = Some((leaf.cert_pem.as_str(), leaf.key_pem.as_str()));
    let renew_at = leaf.not_before + (leaf.not_after - leaf.not_before) * 2 / 3;
    match decide_leaf(existing, &ca, &n, Usage::Server, lifetime(), NOW + DAY) {
        LeafDecision::Keep { renew_at: r } => assert!((r - renew_at).abs() <= 1, "{r} {renew_at}"),
        d => panic!("{d:?}"),
    }
    assert_eq!(
        decide_leaf(existing, &ca, &n, Usage::Server, lifetime(), renew_at + 1),
        LeafDecision::Issue("Renewal")
    );
    assert_eq!(
        decide_leaf(existing, &ca, &n, Usage::Client, lifetime(), NOW),
        LeafDecision::Issue("UsageChanged")
    );
    assert_eq!(
        decide_leaf(existing, &ca, &n[..2], Usage::Server, lifetime(), NOW),
        LeafDecision::Issue("NamesChanged")
    );
    let other = ca
        .issue(
            "gw",
            &n,
            Usage::Server,
            KeyAlgorithm::EcdsaP256,
            NOW,
            90 * DAY,
        )
        .unwrap();
    assert_ne!(other.key_pem, leaf.key_pem, "every issuance has a new key");
    assert_eq!(
        decide_leaf(
            Some((leaf.cert_pem.as_str(), other.key_pem.as_str())),
            &ca,
            &n,
            Usage::Server,
            lifetime(),
            NOW
        ),
        LeafDecision::Issue("KeyMismatch")
    );
    let shorter = Lifetime {
        duration: 2 * HOUR,
        renew_before: None,
    };
    assert_eq!(
        decide_leaf(existing, &ca, &n, Usage::Server, shorter, NOW),
        LeafDecision::Issue("LifetimeShortened"),
        "a shortened durationHours replaces longer-lived leaves at once"
    );
    let short_leaf = ca
        .issue(
            "gw",
            &n,
            Usage::Server,
            KeyAlgorithm::EcdsaP256,
            NOW,
            2 * HOUR,
        )
        .unwrap();
    assert!(
        matches!(
            decide_leaf(
                Some((short_leaf.cert_pem.as_str(), short_leaf.key_pem.as_str())),
                &ca,
                &n,
                Usage::Server,
                shorter,
                NOW
            ),
            LeafDecision::Keep { .. }
        ),
        "a leaf issued with the current lifetime is kept"
    );
    let rotated = Ca::generate("edgeway-ca ns", NOW, 3650 * DAY).unwrap();
    assert_eq!(
        decide_leaf(existing, &rotated, &n, Usage::Server, lifetime(), NOW),
        LeafDecision::Issue("IssuerChanged")
    );
    assert_eq!(
        decide_leaf(
            Some(("junk", "junk")),
            &ca,
            &n,
            Usage::Server,
            lifetime(),
            NOW
        ),
        LeafDecision::Issue("Unparsable")
    );
}

#[test]
fn ca_round_trips_and_rotates_at_two_thirds_with_an_overlap_bundle() {
    let old = ca();
    let loaded = Ca::load(&old.cert_pem, &old.key_pem).unwrap();
    assert_eq!(loaded.not_after, old.not_after);
    assert!(Ca::load(&old.cert_pem, &Ca::generate("x", NOW, DAY).unwrap().key_pem).is_err());
    let rotate_at = match decide_ca(&old, NOW) {
        CaDecision::Keep { rotate_at } => rotate_at,
        d => panic!("{d:?}"),
    };
    assert_eq!(decide_ca(&old, rotate_at), CaDecision::Rotate);
    let new = Ca::generate("edgeway-ca ns", rotate_at, 3650 * DAY).unwrap();
    let bundle = trust_bundle(&new, &old.cert_pem, rotate_at);
    let certs = pem_certs(&bundle).unwrap();
    assert_eq!(certs.len(), 2, "old and new during the overlap");
    let doubled = format!("{}{}", old.cert_pem, old.cert_pem);
    assert_eq!(
        trust_bundle(&new, &doubled, rotate_at),
        bundle,
        "each CA once"
    );
    assert_eq!(
        certs[0],
        pem_certs(&new.cert_pem).unwrap()[0],
        "current first"
    );
    // Re-bundling is stable and drops the old CA once it has expired.
    assert_eq!(trust_bundle(&new, &bundle, rotate_at), bundle);
    let after = trust_bundle(&new, &bundle, old.not_after + 1);
    assert_eq!(pem_certs(&after).unwrap().len(), 1);
}

#[test]
fn rfc3339_formats_status_times() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
}

/// Issue 20 item 6: through a rotation with an overlap, a device that trusts only the old CA
/// keeps verifying the server until the successor signs (both CAs are in ca.crt meanwhile, so
/// devices can fetch the new one); after the promotion the server certificate is re-issued by
/// the new CA, which a new-CA-only client verifies and an old-CA-only client no longer does.
#[test]
fn a_rotation_with_an_overlap_keeps_old_ca_clients_working_until_the_new_ca_signs() {
    let old = ca();
    let rotate_at = match decide_ca(&old, NOW) {
        CaDecision::Keep { rotate_at } => rotate_at,
        d => panic!("{d:?}"),
    };
    let next = Ca::generate("edgeway-ca ns", rotate_at, 3650 * DAY).unwrap();
    let overlap = 30 * DAY;
    let promote = promote_at(&old, &next, overlap);
    assert_eq!(promote, next.not_before + overlap);
    // During the overlap the bundle has both, and the old CA still signs the server's leaf.
    let during = rotate_at + DAY;
    let bundle = trust_bundle(&old, &next.cert_pem, during);
    assert_eq!(pem_certs(&bundle).unwrap().len(), 2);
    let issue = |ca: &Ca, now: i64| {
        ca.issue(
            "gw",
            &names(),
            Usage::Server,
            KeyAlgorithm::EcdsaP256,
            now,
            90 * DAY,
        )
        .unwrap()
    };
    let leaf = issue(&old, during);
    let leaf_der = pem_certs(&leaf.cert_pem).unwrap()[0].clone();
    let old_der = pem_certs(&old.cert_pem).unwrap()[0].clone();
    let new_der = pem_certs(&next.cert_pem).unwrap()[0].clone();
    assert!(
        verify_signed_by(&leaf_der, &old_der),
        "an old-CA-only client verifies"
    );
    assert_eq!(
        decide_leaf(
            Some((&leaf.cert_pem, &leaf.key_pem)),
            &old,
            &names(),
            Usage::Server,
            lifetime(),
            during
        ),
        LeafDecision::Keep {
            renew_at: lifetime().renewal_time(during - 300, during + 90 * DAY)
        }
    );
    // Promotion: the successor signs; the leaf from the old CA is replaced at once.
    assert_eq!(
        decide_leaf(
            Some((&leaf.cert_pem, &leaf.key_pem)),
            &next,
            &names(),
            Usage::Server,
            lifetime(),
            promote
        ),
        LeafDecision::Issue("IssuerChanged")
    );
    let renewed = issue(&next, promote);
    let renewed_der = pem_certs(&renewed.cert_pem).unwrap()[0].clone();
    assert!(
        verify_signed_by(&renewed_der, &new_der),
        "a new-CA-only client verifies"
    );
    assert!(
        !verify_signed_by(&renewed_der, &old_der),
        "an old-CA-only client no longer does"
    );
    // The promotion never waits past the old CA's last day.
    assert_eq!(
        promote_at(&old, &next, 100 * 365 * DAY),
        old.not_after - DAY
    );
}
