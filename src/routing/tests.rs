//! Unit tests of the routing decision order.

use super::*;
use crate::config::{ProviderConfig, RoutingConfig, RuleConfig};
use serde_json::json;

fn config() -> RoutingConfig {
    RoutingConfig {
        triage_provider: "hub".into(),
        directory: None,
        providers: vec![
            ProviderConfig {
                id: "befriend".into(),
                name: "Befriending".into(),
                ods_codes: vec!["8JK12".into()],
                service_identifiers: vec!["https://x/svc|walk".into()],
            },
            ProviderConfig {
                id: "garden".into(),
                name: "Gardening".into(),
                ..Default::default()
            },
        ],
        rules: vec![RuleConfig {
            provider: "garden".into(),
            codes: vec!["http://snomed.info/sct|123".into()],
            postcode_districts: vec!["LS6".into()],
        }],
    }
}

#[test]
fn performer_ods_code_wins() {
    let router = Router::new(&config(), &[]).unwrap();
    let sr = json!({"performer": [{"identifier": {"system": ODS_SYSTEM, "value": "8jk12"}}]});
    let d = router.route(&ReferralFacts::from_referral(&sr, &|_: &str| None));
    assert_eq!(d.provider.id, "befriend");
    assert_eq!(d.reason, RouteReason::Performer);
}

#[test]
fn rule_on_code_and_postcode_district() {
    let router = Router::new(&config(), &[]).unwrap();
    let patient =
        json!({"resourceType": "Patient", "address": [{"use": "home", "postalCode": "LS6 1AB"}]});
    let sr = json!({"subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "123"}]}});
    let resolve = |r: &str| {
        if r == "Patient/p" {
            Some(&patient)
        } else {
            None
        }
    };
    let d = router.route(&ReferralFacts::from_referral(&sr, &resolve));
    assert_eq!(d.provider.id, "garden");
    assert_eq!(d.reason, RouteReason::Rule(0));
}

#[test]
fn unmatched_goes_to_triage() {
    let router = Router::new(&config(), &[]).unwrap();
    let sr = json!({"performer": [{"identifier": {"system": ODS_SYSTEM, "value": "NOPE"}}]});
    let d = router.route(&ReferralFacts::from_referral(&sr, &|_: &str| None));
    assert_eq!(d.provider.id, "hub");
    assert_eq!(d.reason, RouteReason::Triage);
}

#[test]
fn directory_service_identifier_routes_via_provided_by() {
    let directory = vec![
        json!({"resourceType": "Organization", "id": "o1", "name": "Arts",
            "identifier": [{"system": PROVIDER_ID_SYSTEM, "value": "arts"},
                           {"system": ODS_SYSTEM, "value": "A1"}]}),
        json!({"resourceType": "HealthcareService", "id": "s1",
            "providedBy": {"reference": "Organization/o1"},
            "identifier": [{"system": "https://x/hs", "value": "choir"}]}),
    ];
    let router = Router::new(&config(), &directory).unwrap();
    assert!(router.provider_ids().contains(&"arts".to_string()));
    let sr = json!({"performer": [{"identifier": {"system": "https://x/hs", "value": "choir"}}]});
    let d = router.route(&ReferralFacts::from_referral(&sr, &|_: &str| None));
    assert_eq!(d.provider.id, "arts");
    assert_eq!(d.provider.ods_code.as_deref(), Some("A1"));
}

#[test]
fn postcode_districts() {
    assert_eq!(postcode_district("ls6 1ab").as_deref(), Some("LS6"));
    assert_eq!(postcode_district("SW1A1AA").as_deref(), Some("SW1A"));
    assert_eq!(postcode_district("M1").as_deref(), Some("M1"));
    assert_eq!(postcode_district("!"), None);
}

#[test]
fn rule_with_unknown_provider_is_rejected() {
    let mut c = config();
    c.rules[0].provider = "nobody".into();
    assert!(Router::new(&c, &[]).is_err());
}
