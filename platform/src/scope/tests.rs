use super::*;

#[test]
fn globs_match_runs_and_literals() {
    assert!(glob("*", ""));
    assert!(glob("*", "Pump1"));
    assert!(glob("Pump*", "Pump1"));
    assert!(glob("Pump*", "Pump"));
    assert!(!glob("Pump*", "Legit1"));
    assert!(glob("plant-a.*.temp", "plant-a.line3.temp"));
    assert!(!glob("plant-a.*.temp", "plant-a.line3.temp2"));
    assert!(glob("*a*a*b", "aaaaab"));
    assert!(!glob("*a*a*b", "aaaaa"));
    assert!(glob("Legit1", "Legit1"));
    assert!(!glob("Legit1", "Legit10"));
    assert!(!glob("", "x"));
}

#[test]
fn a_hostile_pattern_stays_linear() {
    // The shape that makes backtracking matchers exponential.
    let name = "a".repeat(256);
    let pattern = format!("{}b", "*a".repeat(127));
    assert!(!glob(&pattern, &name));
    assert!(glob(&pattern[..pattern.len() - 1], &name));
}

#[test]
fn unscoped_allows_all_and_scoped_denies_unlisted_principals() {
    let open = ThingScopes::new(None);
    assert!(open.allows("anyone", "Legit1"));
    let scoped = ThingScopes::new(Some(BTreeMap::from([(
        "plant-a".to_string(),
        vec!["Pump*".to_string(), "Valve7".to_string()],
    )])));
    assert!(scoped.allows("plant-a", "Pump3"));
    assert!(scoped.allows("plant-a", "Valve7"));
    assert!(!scoped.allows("plant-a", "Legit1"));
    assert!(
        !scoped.allows("plant-b", "Pump3"),
        "unlisted principal binds nothing"
    );
}
