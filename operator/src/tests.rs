use super::*;

#[test]
fn versions_parse_with_vendor_suffixes() {
    assert_eq!(parse_version("1", "20"), Some((1, 20)));
    assert_eq!(parse_version("1", "27+"), Some((1, 27)));
    assert_eq!(parse_version("", "20"), None);
    assert!(parse_version("1", "19").unwrap() < MIN_KUBERNETES);
}

#[test]
fn yaml11_booleans_are_quoted_for_kubectl() {
    let text = "enum:\n- required\n- off\nx: on\nname: offline\n- 'no'\n";
    assert_eq!(
        quote_yaml11_booleans(text),
        "enum:\n- required\n- 'off'\nx: 'on'\nname: offline\n- 'no'\n"
    );
    let crd = crd_yaml(false).unwrap();
    assert!(crd.contains("- 'off'") && !crd.contains("- off\n"));
}
