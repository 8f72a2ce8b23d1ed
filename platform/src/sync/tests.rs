use super::*;
use edgeway_protocol::metadata::PropertyDefinition;
use serde_json::json;

fn meta(props: &[(&str, Option<&str>)]) -> ThingMetadata {
    let mut m = ThingMetadata {
        name: "T".into(),
        ..ThingMetadata::default()
    };
    for (name, push) in props {
        let mut aspects = serde_json::Map::new();
        if let Some(p) = push {
            aspects.insert("pushType".into(), json!(p));
        }
        m.property_definitions.insert(
            (*name).into(),
            PropertyDefinition {
                name: (*name).into(),
                description: String::new(),
                base_type: "NUMBER".into(),
                aspects,
            },
        );
    }
    m
}

fn row(name: &str, push: &str) -> SubscriptionRow {
    SubscriptionRow {
        edge_name: name.into(),
        push_type: push.into(),
        push_threshold: 0.0,
    }
}

#[test]
fn the_star_row_becomes_one_row_per_defined_property_with_the_edges_push_type() {
    let m = meta(&[("a", Some("ALWAYS")), ("b", None)]);
    let rows = expand(vec![SubscriptionRow::everything()], Some(&m));
    assert_eq!(rows, vec![row("a", "ALWAYS"), row("b", "VALUE")]);
}

#[test]
fn explicit_rows_win_over_the_star_in_either_order() {
    let m = meta(&[("a", Some("VALUE")), ("b", Some("VALUE"))]);
    let first = expand(
        vec![row("a", "NEVER"), SubscriptionRow::everything()],
        Some(&m),
    );
    assert_eq!(first, vec![row("a", "NEVER"), row("b", "VALUE")]);
    let last = expand(
        vec![SubscriptionRow::everything(), row("a", "NEVER")],
        Some(&m),
    );
    assert!(last.contains(&row("a", "NEVER")) && last.contains(&row("b", "VALUE")));
    assert_eq!(last.len(), 2);
}

#[test]
fn without_definitions_the_rows_stay_as_configured() {
    let rows = vec![SubscriptionRow::everything()];
    assert_eq!(expand(rows.clone(), None), rows);
}
