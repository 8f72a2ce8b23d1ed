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
    // kubectl reads YAML 1.1, where these plain scalars are booleans; the CRD's enum value `off`
    // of `clientAuth` must stay a string.
    let words = [
        "y", "n", "yes", "no", "on", "off", "Y", "N", "On", "Off", "TRUE",
    ];
    let text = serde_saphyr::to_string(&words).unwrap();
    for (line, word) in text.lines().zip(words) {
        assert_eq!(line, format!("- \"{word}\""), "in {text}");
    }
    let crd = crd_yaml(false).unwrap();
    assert!(crd.contains("- \"off\"") && !crd.contains("- off\n"));
}
