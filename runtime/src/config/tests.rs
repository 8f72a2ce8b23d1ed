use super::*;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Server {
    #[allow(dead_code)]
    listen: String,
    #[allow(dead_code)]
    #[serde(default)]
    limits: Limits,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    #[allow(dead_code)]
    #[serde(default)]
    max: u32,
}

#[test]
fn a_bad_value_is_named_by_its_field_path() {
    let e = parse_yaml::<Server>("listen: a\nlimits:\n  max: lots\n", "f.yaml").unwrap_err();
    assert_eq!(e.field, "limits.max");
    assert!(!e.message.contains('\n'), "{e}");
}

#[test]
fn a_syntax_error_names_the_file_and_its_line_without_quoting_it() {
    let e = parse_yaml::<Server>("listen: a\n  secret-ish: [\n", "f.yaml").unwrap_err();
    assert_eq!(e.field, "f.yaml");
    assert!(e.message.contains("line 2"), "{e}");
    assert!(!e.message.contains("secret-ish"), "the file is quoted: {e}");
}

#[test]
fn an_alias_bomb_is_refused_by_the_parser_budget() {
    // Nine levels of nine aliases each: 387 million strings once expanded.
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    text.push_str("listen: a\n");
    let e = parse_yaml::<std::collections::BTreeMap<String, serde_json::Value>>(&text, "f.yaml")
        .unwrap_err();
    assert!(e.message.contains("budget breached"), "{e}");
}
